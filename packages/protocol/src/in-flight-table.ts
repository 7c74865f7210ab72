/**
 * Requests in flight by request_id, for tables that gain and lose an entry on every request: the
 * coordinator's dispatcher and its cluster relays, the provider agent's running calls.
 *
 * Not a Map. When a Map or Set rehashes, V8 keeps the obsolete backing table and links it to
 * its successor, for iterators that may still be walking it. Once one obsolete table has been
 * promoted to the old generation, the minor collector treats its link as a root: the next table
 * survives and is promoted in turn, with every value it held, and so on until the next full
 * collection, after which the first table then alive starts the chain again. A busy table
 * rehashes every few dozen requests, so every request's objects (here: the attempt, its exchange,
 * the HTTP request and response) end up promoted. Measured on the coordinator: after a burst of
 * streams started such a chain, each later non-streaming request promoted about 4 KB and cost
 * 20-60% more CPU, and the chain never ended under load (packages/protocol/test/in-flight-table.test.ts shows
 * the mechanism). A dictionary-mode object (a null-prototype object) rehashes into a new store
 * that nothing old points to.
 */
export class InFlightTable<V extends object> {
  private readonly entries = Object.create(null) as Record<string, V>
  private count = 0

  get size(): number {
    return this.count
  }

  get(id: string): V | undefined {
    return this.entries[id]
  }

  has(id: string): boolean {
    return this.entries[id] !== undefined
  }

  /** Adds or replaces the entry for `id`. */
  set(id: string, value: V): void {
    if (this.entries[id] === undefined) this.count++
    this.entries[id] = value
  }

  /** Removes `id`; false when it was not there. */
  delete(id: string): boolean {
    if (this.entries[id] === undefined) return false
    delete this.entries[id]
    this.count--
    return true
  }

  /** A copy of the values: in insertion order, except that integer-like ids come first, in numeric order. */
  values(): V[] {
    return Object.values(this.entries)
  }
}
