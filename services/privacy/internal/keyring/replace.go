package keyring

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/parley-chat/parley/pkg/seal"
)

// OverwriteKEK writes kek into the existing KEK file at path in place, over
// the old key's bytes, and syncs it: the old key does not survive in a
// freed block the way it would after a rename or a truncation. Where the
// old content was longer, the rest is overwritten with spaces, which
// ParseKEK ignores.
//
// In-place writes reach the same disk blocks on ext4 and XFS; copy-on-write
// file systems (btrfs, ZFS), SSD wear levelling and snapshots may still keep
// the old bytes, so the KEK is best kept on storage that is itself
// encrypted or in a secret store.
func OverwriteKEK(path string, kek seal.Key) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("overwrite kek: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("overwrite kek: %w", err)
	}
	content := []byte(hex.EncodeToString(kek[:]) + "\n")
	if pad := int(info.Size()) - len(content); pad > 0 {
		content = append(content, bytes.Repeat([]byte{' '}, pad)...)
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		return fmt.Errorf("overwrite kek: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync kek: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close kek: %w", err)
	}
	return nil
}
