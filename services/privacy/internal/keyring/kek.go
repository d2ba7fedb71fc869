package keyring

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/parley-chat/parley/pkg/seal"
)

// ParseKEK reads a KEK written as text: the 64 hex digits of its 32 bytes,
// surrounding white space ignored. This is the format of the PARLEY_KEK
// variable and of a KEK file.
func ParseKEK(s string) (seal.Key, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return seal.Key{}, fmt.Errorf("parse kek: not hex: %w", err)
	}
	k, err := seal.KeyFromBytes(b)
	if err != nil {
		return seal.Key{}, fmt.Errorf("parse kek: %w", err)
	}
	return k, nil
}

// LoadOrCreateKEK reads the KEK from the file at path (see ParseKEK for its
// format). When the file does not exist it generates a KEK and writes it
// there with mode 0600, creating the directory with mode 0700. The file
// appears whole or not at all, so processes starting together all end up
// with the same KEK.
func LoadOrCreateKEK(path string) (seal.Key, error) {
	k, err := LoadKEK(path)
	if !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	if k, err = seal.NewKey(); err != nil {
		return seal.Key{}, err
	}
	err = createFile(path, hex.EncodeToString(k[:])+"\n")
	if errors.Is(err, os.ErrExist) {
		// Another process created it first: use theirs.
		return LoadKEK(path)
	}
	if err != nil {
		return seal.Key{}, err
	}
	return k, nil
}

// LoadKEK reads the KEK from the file at path, in the format LoadOrCreateKEK
// writes; the error wraps os.ErrNotExist when there is no file.
func LoadKEK(path string) (seal.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return seal.Key{}, fmt.Errorf("read kek: %w", err)
	}
	k, err := ParseKEK(string(b))
	if err != nil {
		return seal.Key{}, fmt.Errorf("kek file %s: %w", path, err)
	}
	return k, nil
}

// createFile writes content to a temporary file beside path and links it
// into place, so that readers never see a partly written file and an
// existing file is never replaced (the error then wraps os.ErrExist).
func createFile(path, content string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create kek dir: %w", err)
	}
	// CreateTemp makes the file with mode 0600.
	f, err := os.CreateTemp(dir, ".kek-*")
	if err != nil {
		return fmt.Errorf("create kek: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write kek: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync kek: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close kek: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		return fmt.Errorf("create kek: %w", err)
	}
	return nil
}
