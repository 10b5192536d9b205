"""VirusTotal API v3 client against FakeVirusTotal: request shapes, verdict
normalization, 404 as "unknown", 401/429 errors."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tocsin.integrations import IntegrationError, RateLimited
from tocsin.integrations.virustotal import VirusTotal, url_id

SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"  # EICAR test file
MD5 = "44d88612fea8a8f36de82e1278abb02f"


def run(coro):
    return asyncio.run(coro)


def test_url_id_is_unpadded_urlsafe_base64():
    url = "https://login.contoso-verify.example/owa/auth/logon.aspx?replaceCurrent=1"
    ident = url_id(url)
    assert "=" not in ident and "+" not in ident and "/" not in ident
    assert base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode() == url
    assert url_id("http://x") == "aHR0cDovL3g"
    # A URL whose standard base64 contains "/" and "+" characters.
    tricky = "http://a.example/?q=>>>???"
    assert "/" in base64.b64encode(tricky.encode()).decode()
    assert "/" not in url_id(tricky)


def test_url_report_requests_the_unpadded_id_with_the_api_key(fake_vt):
    url = "https://login.contoso-verify.example/owa/auth/logon.aspx?replaceCurrent=1"
    fake_vt.add_url(url, malicious=7, suspicious=1, harmless=60, undetected=20)
    client = VirusTotal(fake_vt.api_key, fake_vt.base_url)

    report = run(client.url_report(url))

    assert report == {
        "type": "url",
        "indicator": url,
        "found": True,
        "malicious": 7,
        "suspicious": 1,
        "harmless": 60,
        "undetected": 20,
        "verdict": "malicious",
        "reputation": -7,
        "last_analysis_date": "2023-11-14T22:13:20Z",
        "link": "https://www.virustotal.com/gui/url/" + fake_vt.objects[("urls", url)]["id"],
    }
    [request] = fake_vt.requests
    assert request.method == "GET"
    assert request.raw_path == f"/api/v3/urls/{url_id(url)}"
    assert request.header("x-apikey") == fake_vt.api_key
    assert request.header("accept") == "application/json"


def test_domain_ip_and_file_reports_and_verdict_thresholds(fake_vt):
    fake_vt.add_domain("contoso-verify.example", malicious=2, harmless=70)
    fake_vt.add_ip("198.51.100.7", suspicious=1, harmless=80)
    fake_vt.add_ip("2001:db8::7", harmless=80, undetected=10)
    fake_vt.add_file(SHA256, md5=MD5, malicious=60, undetected=10)
    client = VirusTotal(fake_vt.api_key, fake_vt.base_url)

    async def main():
        return await asyncio.gather(
            client.domain_report("Contoso-Verify.example."),
            client.ip_report("198.51.100.7"),
            client.ip_report("2001:db8::7"),
            client.file_report(MD5.upper()),
        )

    domain, ip4, ip6, file = run(main())
    assert (domain["indicator"], domain["malicious"], domain["verdict"]) == ("contoso-verify.example", 2, "suspicious")
    assert domain["link"] == "https://www.virustotal.com/gui/domain/contoso-verify.example"
    assert (ip4["verdict"], ip4["suspicious"]) == ("suspicious", 1)
    assert ip4["link"] == "https://www.virustotal.com/gui/ip-address/198.51.100.7"
    assert (ip6["verdict"], ip6["indicator"]) == ("clean", "2001:db8::7")
    assert (file["verdict"], file["malicious"], file["indicator"]) == ("malicious", 60, MD5)
    assert file["link"] == f"https://www.virustotal.com/gui/file/{MD5}"
    paths = sorted(r.path for r in fake_vt.requests)
    assert paths == sorted(
        [
            "/api/v3/domains/contoso-verify.example",
            "/api/v3/ip_addresses/198.51.100.7",
            "/api/v3/ip_addresses/2001:db8::7",
            f"/api/v3/files/{MD5}",
        ]
    )

    # The malicious threshold is configurable: 2 engines are enough at 2.
    strict = VirusTotal(fake_vt.api_key, fake_vt.base_url, malicious_threshold=2)
    assert run(strict.domain_report("contoso-verify.example"))["verdict"] == "malicious"


def test_unknown_indicators_are_verdict_unknown_not_errors(fake_vt):
    client = VirusTotal(fake_vt.api_key, fake_vt.base_url)
    report = run(client.url_report("https://never-seen.example/"))
    assert (report["found"], report["verdict"], report["malicious"]) == (False, "unknown", 0)
    assert report["link"].startswith("https://www.virustotal.com/gui/search/")
    assert run(client.file_report(SHA256))["verdict"] == "unknown"


def test_a_404_that_is_not_not_found_error_is_an_error(fake_vt):
    client = VirusTotal(fake_vt.api_key, fake_vt.url + "/wrong/prefix")
    fake_vt.fail_next(404, "<html>Not Found</html>")
    with pytest.raises(IntegrationError) as caught:
        run(client.domain_report("example.com"))
    assert caught.value.status == 404


def test_wrong_key_quota_and_server_errors(fake_vt):
    wrong = VirusTotal("not-the-key", fake_vt.base_url)
    with pytest.raises(IntegrationError) as caught:
        run(wrong.domain_report("example.com"))
    error = caught.value
    assert (error.status, error.code, error.message) == (401, "WrongCredentialsError", "Wrong API key")
    assert not isinstance(error, RateLimited) and "not-the-key" not in str(error)

    client = VirusTotal(fake_vt.api_key, fake_vt.base_url)
    fake_vt.fail_next(*fake_vt.quota_exceeded(retry_after="42"))
    with pytest.raises(RateLimited) as limited:
        run(client.ip_report("203.0.113.9"))
    assert (limited.value.status, limited.value.code, limited.value.retry_after) == (429, "QuotaExceededError", 42.0)

    fake_vt.fail_next(*fake_vt.quota_exceeded(retry_after=None))
    with pytest.raises(RateLimited) as limited:
        run(client.ip_report("203.0.113.9"))
    assert limited.value.retry_after is None

    fake_vt.fail_next(503, {"error": {"code": "TransientError", "message": "try again"}})
    with pytest.raises(IntegrationError) as caught:
        run(client.ip_report("203.0.113.9"))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (503, "TransientError", True)

    fake_vt.fail_next(200, "not json")
    with pytest.raises(IntegrationError, match="not valid JSON"):
        run(client.ip_report("203.0.113.9"))


def test_invalid_arguments_are_refused_before_any_request(fake_vt):
    client = VirusTotal(fake_vt.api_key, fake_vt.base_url)
    with pytest.raises(ValueError, match="not an IP address"):
        run(client.ip_report("000.111.222.10"))
    with pytest.raises(ValueError, match="MD5, SHA-1 or SHA-256"):
        run(client.file_report("export_pdf_ 65acf801~.js"))
    with pytest.raises(ValueError, match="not a domain"):
        run(client.domain_report("evil.example/path"))
    with pytest.raises(ValueError, match="url"):
        run(client.url_report(""))
    assert fake_vt.requests == []
