DROP INDEX runs_leased;
DROP INDEX runs_published;
DROP INDEX runs_waiting_approval;
