/** Bounds of protocol v1 (specs/protocol.md). Both sides enforce the ones that concern them. */
export const PROTOCOL_VERSION = 1
/** The version of identity v2's auth_init (§2.4). */
export const PROTOCOL_VERSION_V2 = 2
/** How long a challenge stays answerable. */
export const CHALLENGE_TTL_MS = 30_000
/** A key generation is a positive 31-bit integer. */
export const MAX_GENERATION = 2 ** 31 - 1
/** What a provider assumes when hello_ack names no heartbeat interval. */
export const DEFAULT_HEARTBEAT_INTERVAL_S = 30
/** The coordinator's protocol version, sent in hello_ack. */
export const COORDINATOR_VERSION = 1

// features (§2.2): what a coordinator's hello_ack offers beyond protocol v1's base.
/** The provider may put an answer's last piece in inference_response_end's `data` (§4.3). */
export const FEATURE_END_DATA = 'end_data'
/** hello_ack lists at most this many features, each 1–32 characters of [a-z0-9_]. */
export const MAX_FEATURES = 16

// hello (§2.1)
/** A provider's model set: model_id plus supported_models, without duplicates. */
export const MAX_MODELS = 64
export const MAX_CONCURRENCY = 256
export const MAX_CONTEXT_TOKENS = 100_000_000
/** model_id, each supported model, and any other free-text field of the hello. */
export const MAX_TEXT_FIELD = 256
/** As DNS allows. */
export const MAX_HOSTNAME = 253
export const MAX_BINARY_VERSION = 64
export const MAX_THROUGHPUT_TPS = 1e6

// heartbeat and dispatch (§3.1, §4)
export const MAX_SLOTS = 1024
export const REQUEST_ID_MAX = 64
/** seq and token counts are 32-bit signed integers, as JSON numbers every reader parses exactly. */
export const MAX_SEQ = 2 ** 31 - 1
export const MAX_TOKEN_COUNT = 2 ** 31 - 1

// frame shape (§4.2): what JSON.parse may be asked to build from one provider frame. The largest
// valid frame is a heartbeat naming 64 models (about 130 tokens, depth 2).
export const MAX_FRAME_DEPTH = 8
export const MAX_FRAME_TOKENS = 1024

// frame sizes (§1.3, §4.1)
/** The first frame (the hello) is at most this many bytes. */
export const MAX_FIRST_FRAME_BYTES = 16 * 1024
/** Any provider frame, as declared in its WebSocket header. */
export const MAX_PROVIDER_FRAME_BYTES = 1024 * 1024
/** An inference_request frame; providers must accept frames this large. */
export const MAX_INFERENCE_REQUEST_BYTES = 4 * 1024 * 1024
