-- Tables of the go-semantic-cache and prisma-drizzle examples (the psql
-- walkthrough creates the same two). Run against PostgreSQL (or through
-- txlane) before an example: psql "$DATABASE_URL" -f examples/setup.sql
CREATE EXTENSION IF NOT EXISTS vector;

-- Business data, written in transactions on the business pool (Go: "business";
-- Node: the Prisma client).
CREATE TABLE IF NOT EXISTS users (
    id         serial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The semantic cache, on the cache pool (Go: "cache"; Node: the Drizzle pool):
-- a vector table, so txlane sends its reads over the vector lane.
CREATE TABLE IF NOT EXISTS optimization_logs (
    id         serial PRIMARY KEY,
    user_id    int,
    prompt     text,
    embedding  vector(3),
    created_at timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS optimization_logs_embedding_idx
    ON optimization_logs USING hnsw (embedding vector_cosine_ops);
