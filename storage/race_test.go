//go:build race

package storage

// raceEnabled: the race detector slows scrypt twentyfold.
const raceEnabled = true
