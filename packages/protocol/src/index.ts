/**
 * @poolcoord/protocol: the provider wire protocol (specs/protocol.md) shared by the
 * coordinator, the provider agent, the tests and the bench. No runtime dependencies.
 */
export * from './bounds.js'
export * from './close-codes.js'
export * from './fields.js'
export * from './frame-shape.js'
export * from './identity-proof.js'
export * from './in-flight-table.js'
export * from './ids.js'
export * from './messages.js'
export * from './operator-api.js'
export * from './parse-coordinator-message.js'
export * from './parse-provider-message.js'
