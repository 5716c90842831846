-- Dist-tags: names an entry's maintainers point at one of its versions (`stable`, `beta`,
-- or `latest` to override the highest release). Times are epoch milliseconds. Kept in
-- step with migrations/sqlite/0019_dist_tags.sql of quiver-sqlite.
CREATE TABLE dist_tags (
    entry_id   BIGINT  NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    tag        TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (entry_id, tag)
);
