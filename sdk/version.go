package sdk

// Version is the version of this SDK (semantic versioning). Its major
// version follows the plugin protocol's: every sdk 1.x speaks protocol
// version 1 (ProtocolVersion). A minor version adds to the SDK or the
// protocol without breaking plugins built with an earlier 1.x; a patch
// version only fixes.
const Version = "1.0.0"

// ProtocolVersion is the version of the hookbus plugin protocol this SDK
// speaks (sdk/proto/hookbus/plugin/v1, the handshake's app protocol
// version). See "Compatibility" in the package doc and sdk/PROTOCOL.md.
const ProtocolVersion = 1
