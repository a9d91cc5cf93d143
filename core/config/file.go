package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxFileSize caps the configuration file: a configuration is a few
// kilobytes, and a path such as /dev/zero must not be read forever.
const MaxFileSize = 4 << 20

// readFile reads a configuration file of at most MaxFileSize bytes. It
// refuses anything but a regular file (a device, a FIFO, a directory), whose
// reading could block or never end, naming the path and what it is.
func readFile(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO blocks until a writer appears.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regular(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Check the opened file too: the path may have been replaced meanwhile.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := regular(path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrFileTooLarge)
	}
	return data, nil
}

// ErrFileTooLarge is returned for a configuration file over MaxFileSize.
var ErrFileTooLarge = fmt.Errorf("file is larger than the limit of %d MiB for a configuration file", MaxFileSize>>20)

// ErrNotRegular is returned for a configuration path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

func regular(path string, fi fs.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() {
		return nil
	}
	what := "a special file"
	switch {
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	}
	return fmt.Errorf("%s: %w (it is %s); give the path of a YAML file", path, ErrNotRegular, what)
}

// bytesProvider is a koanf provider of bytes already read.
type bytesProvider []byte

// ReadBytes returns the bytes.
func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }

// Read is not supported: the bytes need a parser.
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("config: bytes provider needs a parser")
}
