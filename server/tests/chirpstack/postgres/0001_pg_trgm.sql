-- ChirpStack's own migrations need pg_trgm and cannot create it without a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
