-- A user's pins and hides of skills in the suggestions for a package (`*`: every
-- package). Times are epoch milliseconds. Kept in step with the other backend's
-- 0020_skill_preferences.sql.
CREATE TABLE skill_preferences (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ecosystem  TEXT    NOT NULL,
    package    TEXT    NOT NULL,
    skill_id   BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    action     TEXT    NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, ecosystem, package, skill_id)
);
