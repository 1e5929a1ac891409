-- ACCloud's funders and service codes as the workers last read them (each list replaced whole
-- by each read), for the console to offer when a reviewer names one.
CREATE TABLE accloud_names (
    list TEXT NOT NULL,
    id   BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (list, id)
);
