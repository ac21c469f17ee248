package store

import (
	"fmt"
	"os"
	"path/filepath"
)

// AttachDisk opens the existing disk store at dir beside the process that may be serving it:
// unlike OpenDisk it creates nothing and leaves the temporary files alone, since they may be
// fills in progress. It is for tools that check or prune a live cache (holoproxy verify).
func AttachDisk(dir string) (*Disk, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("store: %s is not a directory", abs)
	}
	d := &Disk{root: abs}
	d.closed.Store(true) // no temporary directory: CreateTemp fails
	return d, nil
}
