-- Reference data: the area directory (GV100AD) with retired keys, the LeiKa
-- catalogue and the postcode table. An area is identified by (ars, level):
-- one ARS names a kreisfreie Stadt as Kreis, Gemeindeverband and Gemeinde.
-- search_name is the folded name (store.FoldName) that LIKE searches.

-- +goose Up
CREATE TABLE areas (
    ars                text NOT NULL,
    level              smallint NOT NULL,
    ags                text NOT NULL,
    name               text NOT NULL,
    search_name        text NOT NULL,
    seat               text NOT NULL,
    kind               smallint NOT NULL,
    parent             text NOT NULL,
    parent_level       smallint NOT NULL,
    population         bigint NOT NULL,
    male               bigint NOT NULL,
    hectares           bigint NOT NULL,
    postal_code        text NOT NULL,
    postal_code_unique boolean NOT NULL,
    stand              date NOT NULL,
    retired_at         timestamptz,
    retired_stand      date,
    PRIMARY KEY (ars, level)
);
CREATE INDEX areas_ags ON areas (ags, level);

CREATE TABLE leika_services (
    key          text PRIMARY KEY,
    name         text NOT NULL,
    level        text NOT NULL,
    typisierung  text NOT NULL,
    kind         text NOT NULL,
    ozg_id       text NOT NULL,
    ozg_leistung text NOT NULL,
    themenfeld   text NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE postcodes (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plz          text NOT NULL,
    ags          text NOT NULL,
    ars          text NOT NULL,
    name         text NOT NULL,
    district_ars text NOT NULL,
    in_directory boolean NOT NULL
);
CREATE INDEX postcodes_plz ON postcodes (plz);
CREATE INDEX postcodes_ags ON postcodes (ags);

-- +goose Down
DROP TABLE postcodes;
DROP TABLE leika_services;
DROP TABLE areas;
