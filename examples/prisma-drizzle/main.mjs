// Prisma (users, transactions) and Drizzle (a pgvector semantic cache) on two
// pools behind txlane, sharing a unit of work per request.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:6432/txlane_test?sslmode=disable \
//   TXLANE_ESCAPE=reject node main.mjs
//
// Runs the approved patterns and the forbidden one, prints a JSON summary and
// exits 1 when an outcome differs from what txlane's policy.escape should give
// (TXLANE_ESCAPE: reject (default), reroute, or allow — also what PostgreSQL
// itself does when DATABASE_URL points straight at it).
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDrizzle, createPrisma, countPrompt, embed, findSimilar, storeOptimization } from './src/db.mjs'
import { withoutUnit, withUnit } from './src/units.mjs'

const CODE_ESCAPED_WRITE = '25L01'

const url = process.env.DATABASE_URL
if (!url) {
  console.error('main.mjs: set DATABASE_URL to txlane, e.g. postgres://postgres@127.0.0.1:6432/txlane_test?sslmode=disable')
  process.exit(2)
}
let escape = process.env.TXLANE_ESCAPE || 'reject'
if (escape === 'log') escape = 'allow'
if (!['reject', 'reroute', 'allow'].includes(escape)) {
  console.error(`main.mjs: TXLANE_ESCAPE=${escape}: want reject, reroute or allow`)
  process.exit(2)
}
const scenarioTimeoutMs = Number(process.env.SCENARIO_TIMEOUT_MS || 30000)

const prisma = createPrisma(url)
const { pool, db } = createDrizzle(url)
const run = randomBytes(4).toString('hex') // makes units, emails and prompts unique per run
const unit = (name) => `req-${name}-${run}`
const email = (name) => `${name}-${run}@example.com`
const prompt = (name) => `optimize ${name} ${run}`

class Rollback extends Error {}
const TX = { timeout: scenarioTimeoutMs, maxWait: scenarioTimeoutMs }

/** The PostgreSQL error behind a Drizzle (pg) or Prisma (adapter-pg) error. */
function pgError(e) {
  const adapter = e?.meta?.driverAdapterError?.cause
  if (adapter?.code) return adapter
  if (e?.cause?.code) return e.cause
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e
  return undefined
}

/** Throws unless e is txlane's refusal of a write to table in unitId. */
function expectEscapeError(e, table, unitId) {
  if (e === undefined) throw new Error(`the write succeeded; want SQLSTATE ${CODE_ESCAPED_WRITE}`)
  const pe = pgError(e)
  if (!pe) throw new Error(`want SQLSTATE ${CODE_ESCAPED_WRITE}, got ${e}`)
  if (pe.code !== CODE_ESCAPED_WRITE) throw new Error(`want SQLSTATE ${CODE_ESCAPED_WRITE}, got ${pe.code}: ${pe.message}`)
  if (!pe.message.includes(table) || !pe.message.includes(unitId)) {
    throw new Error(`message ${JSON.stringify(pe.message)} does not name table ${table} and unit ${unitId}`)
  }
  if (!pe.detail || !pe.hint) throw new Error(`want a DETAIL and a HINT, got ${JSON.stringify(pe)}`)
  return `${pe.code}: ${pe.message} DETAIL: ${pe.detail} HINT: ${pe.hint}`
}

async function expectCount(what, actual, want) {
  const n = await actual
  if (n !== want) throw new Error(`${what}: ${n} rows, want ${want}`)
}
// Checks read outside any unit: committed data only.
const cacheRows = (name) => withoutUnit(() => countPrompt(db, prompt(name)))
const userRows = (name) => withoutUnit(() => prisma.user.count({ where: { email: email(name) } }))

// The forbidden pattern that reroute and allow both run, with opposite
// outcomes: under unit name, a Prisma transaction creates a user, Drizzle
// stores an optimization for it, and the transaction rolls back. Checks that
// the user is gone; whether the cache row went with it is the caller's to check.
function drizzleWriteInRollback(name) {
  return withUnit(unit(name), async () => {
    await prisma.$transaction(async (tx) => {
      const user = await tx.user.create({ data: { email: email(name) } })
      await storeOptimization(db, { userId: user.id, prompt: prompt(name), embedding: embed(name) })
      throw new Rollback()
    }, TX).catch((e) => { if (!(e instanceof Rollback)) throw e })
    await expectCount('users', userRows(name), 0)
  })
}

async function seed() {
  for (const p of ['summarize the quarterly report', 'translate the release notes', 'rank search results']) {
    await storeOptimization(db, { userId: 0, prompt: `${p} ${run}`, embedding: embed(p) })
  }
}

const approved = [
  ['vector read outside a transaction', () =>
    withUnit(unit('read-outside'), async () => {
      const hits = await findSimilar(db, embed('summarize the quarterly report'))
      if (hits.length === 0) throw new Error('no similar optimization found')
      return `${hits.length} hits, nearest ${JSON.stringify(hits[0].prompt)}`
    })],

  ['vector reads inside a Prisma interactive transaction', () =>
    withUnit(unit('read-inside'), async () => {
      const counts = await prisma.$transaction(async (tx) => {
        await tx.user.create({ data: { email: email('read-inside') } })
        // On the Drizzle pool, same unit: a read is never refused.
        const viaDrizzle = await findSimilar(db, embed('translate the release notes'))
        // In the Prisma transaction itself: a READ COMMITTED read of a vector
        // table it has not written (txlane's vector lane).
        const e = JSON.stringify(embed('rank search results'))
        const viaPrisma = await tx.$queryRaw`SELECT id, prompt, embedding <=> ${e}::vector AS distance
                                             FROM optimization_logs ORDER BY 3 LIMIT 3`
        return [viaDrizzle.length, viaPrisma.length]
      }, TX)
      if (counts.includes(0)) throw new Error(`reads found ${counts} rows, want some`)
      await expectCount('users', userRows('read-inside'), 1)
      return `Drizzle read ${counts[0]} rows, Prisma transaction read ${counts[1]} rows, committed`
    })],

  ['cache write after the Prisma transaction commits', () =>
    withUnit(unit('after-commit'), async () => {
      const user = await prisma.$transaction((tx) => tx.user.create({ data: { email: email('after-commit') } }), TX)
      // The unit is released at COMMIT: the same unit may write the cache now.
      await storeOptimization(db, { userId: user.id, prompt: prompt('after-commit'), embedding: embed('after commit') })
      await expectCount('optimization_logs', cacheRows('after-commit'), 1)
      return 'one row'
    })],

  ['concurrent independent work on both pools', async () => {
    // Request A holds its unit in a Prisma transaction while other requests
    // (their own units, or none) write and read the cache and run transactions.
    let holding
    const held = new Promise((resolve) => { holding = resolve })
    let release
    const released = new Promise((resolve) => { release = resolve })
    const a = withUnit(unit('concurrent-a'), () =>
      prisma.$transaction(async (tx) => {
        await tx.user.create({ data: { email: email('concurrent-a') } })
        holding()
        await released
      }, TX)).finally(() => holding())
    await held
    const names = Array.from({ length: 6 }, (_, i) => `concurrent-b${i}`)
    const work = async (name) => {
      await storeOptimization(db, { userId: 0, prompt: prompt(name), embedding: embed(name) })
      await findSimilar(db, embed(name), 2)
      await prisma.$transaction((tx) => tx.user.create({ data: { email: email(name) } }), TX)
    }
    const results = await Promise.allSettled(names.map((name, i) => (i % 2 === 0 ? withUnit(unit(name), () => work(name)) : work(name))))
    release()
    const holder = await Promise.allSettled([a])
    const failed = [...results, ...holder].flatMap((r, i) => (r.status === 'rejected' ? [`${names[i] ?? 'holder'}: ${r.reason?.message ?? r.reason}`] : []))
    if (failed.length) throw new Error(failed.join('; '))
    for (const name of names) await expectCount(`optimization_logs ${name}`, cacheRows(name), 1)
    return `${names.length} independent requests while unit A was held`
  }],
]

const forbidden = {
  reject: [
    ['Drizzle write inside a Prisma transaction is rejected', () => {
      const u = unit('reject')
      return withUnit(u, async () => {
        let writeError
        await prisma.$transaction(async (tx) => {
          const user = await tx.user.create({ data: { email: email('reject') } })
          try {
            // The forbidden write: the other pool, the same unit, while the transaction is open.
            await storeOptimization(db, { userId: user.id, prompt: prompt('reject'), embedding: embed('reject') })
          } catch (e) {
            writeError = e
          }
        }, TX) // the Prisma transaction itself commits
        const detail = expectEscapeError(writeError, 'optimization_logs', u)
        await expectCount('optimization_logs', cacheRows('reject'), 0)
        await expectCount('users', userRows('reject'), 1)
        return detail
      })
    }],
    ['Prisma write inside a Drizzle transaction is rejected', () => {
      // The rule is symmetric: here the Drizzle pool opened the transaction.
      const u = unit('reject-sym')
      return withUnit(u, async () => {
        let writeError
        await db.transaction(async (tx) => {
          await storeOptimization(tx, { userId: 0, prompt: prompt('reject-sym'), embedding: embed('reject sym') })
          try {
            await prisma.user.create({ data: { email: email('reject-sym') } })
          } catch (e) {
            writeError = e
          }
          throw new Rollback()
        }).catch((e) => { if (!(e instanceof Rollback)) throw e })
        const detail = expectEscapeError(writeError, 'users', u)
        await expectCount('optimization_logs', cacheRows('reject-sym'), 0)
        await expectCount('users', userRows('reject-sym'), 0)
        return detail
      })
    }],
  ],

  reroute: [
    ['rerouted Drizzle write rolls back with the Prisma transaction', async () => {
      await drizzleWriteInRollback('reroute-rollback')
      await expectCount('optimization_logs', cacheRows('reroute-rollback'), 0)
      return 'holder rolled back: no row'
    }],
    ['rerouted Drizzle write commits with the Prisma transaction', () =>
      withUnit(unit('reroute-commit'), async () => {
        const seen = await prisma.$transaction(async (tx) => {
          const user = await tx.user.create({ data: { email: email('reroute-commit') } })
          await storeOptimization(db, { userId: user.id, prompt: prompt('reroute-commit'), embedding: embed('reroute') })
          // Before COMMIT the row exists only inside the transaction.
          await expectCount('optimization_logs before COMMIT, outside the unit', cacheRows('reroute-commit'), 0)
          const [{ n }] = await tx.$queryRaw`SELECT count(*)::int AS n FROM optimization_logs WHERE prompt = ${prompt('reroute-commit')}`
          return n
        }, TX)
        if (seen !== 1) throw new Error(`the transaction saw ${seen} rerouted rows, want 1`)
        await expectCount('users', userRows('reroute-commit'), 1)
        await expectCount('optimization_logs', cacheRows('reroute-commit'), 1)
        return 'holder committed: exactly one row'
      })],
    ['reads in the unit follow a rerouted write', () =>
      withUnit(unit('reroute-ryw'), async () => {
        const seen = await prisma.$transaction(async (tx) => {
          await tx.user.create({ data: { email: email('reroute-ryw') } })
          await storeOptimization(db, { userId: 0, prompt: prompt('reroute-ryw'), embedding: embed('ryw') })
          // Outside the unit the row is not there yet (not committed) ...
          await expectCount('optimization_logs before COMMIT, outside the unit', cacheRows('reroute-ryw'), 0)
          // ... but the Drizzle pool, in the same unit, reads its own write.
          return countPrompt(db, prompt('reroute-ryw'))
        }, TX)
        if (seen !== 1) throw new Error(`a Drizzle read in the unit saw ${seen} rerouted rows before commit, want 1`)
        await expectCount('optimization_logs', cacheRows('reroute-ryw'), 1)
        return 'read-your-writes across pools'
      })],
    ['a write from inside its own transaction is still rejected', () => {
      const u = unit('reroute-own-tx')
      return withUnit(u, async () => {
        let writeError
        await prisma.$transaction(async (tx) => {
          await tx.user.create({ data: { email: email('reroute-own-tx') } })
          // The writer is in a transaction of its own: it cannot be rerouted
          // into the holder's, so it is rejected.
          await db.transaction((own) =>
            storeOptimization(own, { userId: 0, prompt: prompt('reroute-own-tx'), embedding: embed('own tx') }))
            .catch((e) => { writeError = e })
        }, TX)
        const detail = expectEscapeError(writeError, 'optimization_logs', u)
        await expectCount('optimization_logs', cacheRows('reroute-own-tx'), 0)
        return detail
      })
    }],
  ],

  allow: [
    ['without the rule the Drizzle write escapes the rollback', async () => {
      await drizzleWriteInRollback('escape')
      // The bug txlane exists for: the user is gone, its cache row is not.
      await expectCount('optimization_logs', cacheRows('escape'), 1)
      return 'the user rolled back, its cache row persisted'
    }],
  ],
}

async function runScenario(kind, [name, fn]) {
  const stop = new AbortController()
  const timeout = sleep(scenarioTimeoutMs, undefined, { signal: stop.signal }).then(
    () => { throw new Error(`timed out after ${scenarioTimeoutMs} ms`) },
    () => {}, // aborted: the scenario finished first
  )
  try {
    const detail = await Promise.race([fn(), timeout])
    return { name, kind, ok: true, detail }
  } catch (e) {
    return { name, kind, ok: false, problem: e?.message ?? String(e) }
  } finally {
    stop.abort()
  }
}

const summary = { example: 'prisma-drizzle', escape, ok: true, scenarios: [] }
try {
  try {
    await seed()
  } catch (e) {
    summary.scenarios.push({ name: 'seed', kind: 'approved', ok: false, problem: e?.message ?? String(e) })
  }
  if (summary.scenarios.length === 0) {
    for (const s of approved) summary.scenarios.push(await runScenario('approved', s))
    for (const s of forbidden[escape]) summary.scenarios.push(await runScenario('forbidden', s))
  }
} finally {
  summary.ok = summary.scenarios.every((s) => s.ok)
  console.log(JSON.stringify(summary, null, 2))
  await Promise.race([Promise.allSettled([prisma.$disconnect(), pool.end()]), sleep(5000)])
}
process.exit(summary.ok ? 0 : 1)
