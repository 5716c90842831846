-- Entries a maintainer disabled (quiver_model::Disabled as JSON: reason, since); NULL
-- while enabled. A disabled entry keeps its versions and history.
ALTER TABLE entries ADD COLUMN disabled TEXT;
