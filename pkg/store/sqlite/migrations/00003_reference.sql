-- Reference data: the area directory (GV100AD) with retired keys, the LeiKa
-- catalogue and the postcode table. An area is identified by (ars, level):
-- one ARS names a kreisfreie Stadt as Kreis, Gemeindeverband and Gemeinde.
-- search_name is the folded name (store.FoldName) that LIKE searches.

-- +goose Up
CREATE TABLE areas (
    ars                TEXT NOT NULL,
    level              INTEGER NOT NULL,
    ags                TEXT NOT NULL,
    name               TEXT NOT NULL,
    search_name        TEXT NOT NULL,
    seat               TEXT NOT NULL,
    kind               INTEGER NOT NULL,
    parent             TEXT NOT NULL,
    parent_level       INTEGER NOT NULL,
    population         INTEGER NOT NULL,
    male               INTEGER NOT NULL,
    hectares           INTEGER NOT NULL,
    postal_code        TEXT NOT NULL,
    postal_code_unique INTEGER NOT NULL,
    stand              TEXT NOT NULL,
    retired_at         TEXT,
    retired_stand      TEXT,
    PRIMARY KEY (ars, level)
) STRICT;
CREATE INDEX areas_ags ON areas (ags, level);

CREATE TABLE leika_services (
    key          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    level        TEXT NOT NULL,
    typisierung  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    ozg_id       TEXT NOT NULL,
    ozg_leistung TEXT NOT NULL,
    themenfeld   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

CREATE TABLE postcodes (
    seq          INTEGER PRIMARY KEY,
    plz          TEXT NOT NULL,
    ags          TEXT NOT NULL,
    ars          TEXT NOT NULL,
    name         TEXT NOT NULL,
    district_ars TEXT NOT NULL,
    in_directory INTEGER NOT NULL
) STRICT;
CREATE INDEX postcodes_plz ON postcodes (plz);
CREATE INDEX postcodes_ags ON postcodes (ags);

-- +goose Down
DROP TABLE postcodes;
DROP TABLE leika_services;
DROP TABLE areas;
