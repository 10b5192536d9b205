"""Secrets handed to a run (``run.secrets``).

The platform resolves the secrets of the run's tenant and sends them in the
``start_run`` message. Playbooks read them through :class:`Secrets`, a
read-only mapping whose ``repr`` never reveals a value and whose missing keys
raise :class:`SecretNotFound` with instructions on how to set the secret.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Secrets", "SecretNotFound"]


class SecretNotFound(KeyError):
    """A playbook asked for a secret that is not set for the run's tenant.

    It is a :class:`KeyError`, so ``run.secrets.get(name)`` and
    ``name in run.secrets`` behave like on any mapping.
    """

    def __init__(self, name: str, tenant: str = "") -> None:
        super().__init__(name)
        self.name = str(name)
        self.tenant = str(tenant)

    def __str__(self) -> str:
        where = f" for tenant {self.tenant!r}" if self.tenant else ""
        return (
            f"secret {self.name!r} is not set{where}; set it with `tocsin secret set {self.name}` "
            "(in tests, pass secrets={...} to tocsin.testing.run_playbook)"
        )


class Secrets(Mapping[str, str]):
    """Read-only mapping of secret name to value.

    ``secrets["NAME"]`` raises :class:`SecretNotFound` when the secret is not
    set; ``secrets.get("NAME")`` returns ``None`` instead. ``repr()`` and
    ``str()`` list the names only, never the values.
    """

    __slots__ = ("_values", "_tenant")

    def __init__(self, values: Mapping[str, str] | None = None, *, tenant: str = "") -> None:
        checked: dict[str, str] = {}
        if values is not None:
            if not isinstance(values, Mapping):
                raise TypeError(f"secrets must be a mapping of name to string, got {type(values).__name__}")
            for name, value in values.items():
                if not isinstance(name, str) or not name:
                    raise TypeError(f"secret names must be non-empty strings, got {name!r}")
                if not isinstance(value, str):
                    # Do not echo the value: it is a secret.
                    raise TypeError(f"secret {name!r} must be a string, got {type(value).__name__}")
                checked[name] = value
        object.__setattr__(self, "_values", checked)
        object.__setattr__(self, "_tenant", str(tenant))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("run.secrets is read-only")

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise SecretNotFound(name, self._tenant) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __repr__(self) -> str:
        names = ", ".join(sorted(self._values))
        return f"<Secrets: {len(self._values)} set ({names})>" if names else "<Secrets: none set>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("run.secrets cannot be pickled")
