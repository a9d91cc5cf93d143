package envelope

import "encoding/json"

// Member follows the dotted path segs into the JSON value raw, member by
// member, and returns the value it finds as written; nil when a member is
// missing or a value on the way is not an object. The ordering key of a
// sink and the window key of an aggregate step are read with it.
func Member(raw json.RawMessage, segs []string) json.RawMessage {
	for _, seg := range segs {
		if len(raw) == 0 {
			return nil
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		raw = obj[seg]
	}
	return raw
}
