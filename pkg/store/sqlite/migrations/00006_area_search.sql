-- Area search folds names further (store.FoldName): besides lower case and
-- ß as ss, ä, ö, ü as ae, oe, ue, and "st." or "st " at the start of a word
-- as "sankt ". This folds the stored search_name so for the names of the
-- directory (a word starts the name or follows a space, '-', '(' or '/');
-- an import refolds any name whose search_name still differs.
--
-- seeded marks areas written by SeedAreas, stand-ins that set no
-- Gebietsstand and that an import replaces. Areas only ever written by the
-- dev command's demo (every areas import by the actor "dev") are such.

-- +goose Up
ALTER TABLE areas ADD COLUMN seeded INTEGER NOT NULL DEFAULT 0;
UPDATE areas SET seeded = 1
    WHERE NOT EXISTS (SELECT 1 FROM audit_log WHERE action = 'reference.areas.import' AND actor <> 'dev');

UPDATE areas SET search_name =
    replace(replace(replace(replace(replace(replace(search_name,
        'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'),
        'a' || char(776), 'ae'), 'o' || char(776), 'oe'), 'u' || char(776), 'ue');
UPDATE areas SET search_name = ' ' || search_name WHERE instr(search_name, 'st') > 0;
UPDATE areas SET search_name =
    replace(replace(replace(search_name, ' st. ', ' sankt '), ' st.', ' sankt '), ' st ', ' sankt ')
    WHERE instr(search_name, 'st') > 0;
UPDATE areas SET search_name =
    replace(replace(replace(search_name, '-st. ', '-sankt '), '-st.', '-sankt '), '-st ', '-sankt ')
    WHERE instr(search_name, 'st') > 0;
UPDATE areas SET search_name =
    replace(replace(replace(search_name, '(st. ', '(sankt '), '(st.', '(sankt '), '(st ', '(sankt ')
    WHERE instr(search_name, 'st') > 0;
UPDATE areas SET search_name =
    replace(replace(replace(search_name, '/st. ', '/sankt '), '/st.', '/sankt '), '/st ', '/sankt ')
    WHERE instr(search_name, 'st') > 0;
UPDATE areas SET search_name = trim(search_name, ' ');

-- +goose Down
-- search_name keeps the newer fold, which the older search does not use
-- for umlauts: re-import the directory after going down.
ALTER TABLE areas DROP COLUMN seeded;
