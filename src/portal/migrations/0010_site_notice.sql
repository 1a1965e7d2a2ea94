-- A service notice shown at the top of every page (a boil-water notice, a main break,
-- an office closure), in English and in Spanish. At most one at a time: `portal notice
-- set` writes row 1, `portal notice clear` deletes it.
CREATE TABLE site_notice (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text_en TEXT NOT NULL,
    text_es TEXT NOT NULL,
    set_at TEXT NOT NULL
);
