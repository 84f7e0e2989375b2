// The two ORMs of the example, each with its own pool, both pointed at txlane.
import pg from 'pg'
import pgvector from 'pgvector'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import { queryTags } from '@prisma/sqlcommenter-query-tags'
import { drizzle } from 'drizzle-orm/node-postgres'
import { customType, integer, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core'
import { eq, sql } from 'drizzle-orm'
import { UnitClient } from './units.mjs'

// Prisma: the users table (prisma/schema.prisma), through @prisma/adapter-pg.
// comments: [queryTags()] appends the tags of withQueryTags() to every statement.
export function createPrisma(connectionString) {
  const adapter = new PrismaPg({ connectionString, application_name: 'prisma', max: 5 })
  return new PrismaClient({ adapter, comments: [queryTags()] })
}

// Drizzle: the semantic cache, vectors converted by pgvector.
const vector3 = customType({
  dataType: () => 'vector(3)',
  toDriver: (value) => pgvector.toSql(value),
  fromDriver: (value) => pgvector.fromSql(value),
})

export const optimizationLogs = pgTable('optimization_logs', {
  id: serial('id').primaryKey(),
  userId: integer('user_id'),
  prompt: text('prompt'),
  embedding: vector3('embedding'),
  createdAt: timestamp('created_at', { withTimezone: true }).defaultNow(),
})

export function createDrizzle(connectionString) {
  const pool = new pg.Pool({ connectionString, application_name: 'drizzle', max: 5, Client: UnitClient })
  return { pool, db: drizzle({ client: pool }) }
}

/** Records an optimization in the cache; returns its id. */
export async function storeOptimization(db, { userId, prompt, embedding }) {
  const [row] = await db
    .insert(optimizationLogs)
    .values({ userId, prompt, embedding })
    .returning({ id: optimizationLogs.id })
  return row.id
}

/** The k cached optimizations nearest to embedding (cosine distance). */
export async function findSimilar(db, embedding, k = 3) {
  const distance = sql`${optimizationLogs.embedding} <=> ${pgvector.toSql(embedding)}`
  return db
    .select({ id: optimizationLogs.id, prompt: optimizationLogs.prompt, embedding: optimizationLogs.embedding, distance })
    .from(optimizationLogs)
    .orderBy(distance)
    .limit(k)
}

/** How many cache rows have this prompt (committed data, unless in a unit that sees more). */
export async function countPrompt(db, prompt) {
  const [row] = await db
    .select({ n: sql`count(*)::int` })
    .from(optimizationLogs)
    .where(eq(optimizationLogs.prompt, prompt))
  return row.n
}

/** A stand-in for an embedding model: a deterministic unit vector of 3 dimensions. */
export function embed(textValue) {
  const v = [0, 0, 0]
  for (const word of textValue.toLowerCase().split(/\s+/).filter(Boolean)) {
    let h = 0x811c9dc5
    for (const ch of Buffer.from(word)) {
      h ^= ch
      h = Math.imul(h, 0x01000193) >>> 0
    }
    v[h % 3] += 1 + (h % 7) / 7
  }
  const n = Math.hypot(...v) || 1
  return n === 1 && v.every((x) => x === 0) ? [1, 0, 0] : v.map((x) => x / n)
}
