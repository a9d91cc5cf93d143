//go:build !linux

package pluginhost

import "os/exec"

// setDeathSignal does nothing here; the sdk's parent watch stops orphans.
func setDeathSignal(*exec.Cmd) {}
