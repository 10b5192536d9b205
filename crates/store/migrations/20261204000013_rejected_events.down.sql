DROP TABLE rejected_events;
