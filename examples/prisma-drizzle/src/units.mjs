// Units of work for both ORMs.
//
// withUnit(id, fn) runs fn with `id` as the unit of work of everything it does:
//   - Prisma: @prisma/sqlcommenter-query-tags appends /*unit='id'*/ to every
//     statement (the client is created with comments: [queryTags()]);
//   - pg/Drizzle: UnitClient below appends the same comment, reading the unit
//     from an AsyncLocalStorage.
// txlane reads the comment (policy.unit_comment_keys, default [unit]) and so
// knows that a write on the Drizzle pool belongs to a transaction that is open
// on the Prisma pool.
import { AsyncLocalStorage } from 'node:async_hooks'
import pg from 'pg'
import { withQueryTags } from '@prisma/sqlcommenter-query-tags'

const storage = new AsyncLocalStorage()

/** The unit of work of the current async context, or undefined. */
export function currentUnit() {
  return storage.getStore()
}

/** Runs fn with unit as the unit of work of every statement it sends. */
export function withUnit(unit, fn) {
  return storage.run(unit, () => withQueryTags({ unit }, fn))
}

/**
 * sqlcommenter comment for a unit: key='value', the value URL-encoded and its
 * quotes escaped, as @prisma/sqlcommenter-query-tags does.
 */
export function unitComment(unit) {
  const value = encodeURIComponent(unit).replaceAll("'", "\\'")
  return `/*unit='${value}'*/`
}

function tag(text, unit) {
  return `${text} ${unitComment(unit)}`
}

/**
 * A pg Client whose query() appends the current unit as a sqlcommenter
 * comment. Give it to a pool as `new pg.Pool({ Client: UnitClient, ... })`:
 * pool.query(), pool.connect() clients and so Drizzle's queries and
 * transactions all go through it.
 *
 * Named prepared statements (query configs with a `name`) must keep one text
 * per name in pg: do not combine them with per-request units.
 */
export class UnitClient extends pg.Client {
  query(config, values, callback) {
    const unit = currentUnit()
    if (unit !== undefined) {
      if (typeof config === 'string') {
        config = tag(config, unit)
      } else if (config && typeof config.text === 'string' && typeof config.submit !== 'function') {
        config = { ...config, text: tag(config.text, unit) }
      }
    }
    return super.query(config, values, callback)
  }
}

/** Runs fn outside any unit of work (its statements carry no unit). */
export function withoutUnit(fn) {
  return storage.exit(() => withQueryTags({}, fn))
}
