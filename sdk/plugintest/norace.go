//go:build !race

package plugintest

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = false
