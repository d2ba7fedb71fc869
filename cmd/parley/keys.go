package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/services/privacy"
)

const keysUsage = `Usage: parley keys rotate [--data-dir D | --nats-url URL ...] [--kek-file F | --new-kek-file F]

Rotates the key-encryption key (KEK): generates a new KEK, re-wraps every
subject's keys under it (erased subjects hold no key and are skipped),
secure-deletes each old record from the store, and then destroys the old
KEK. Copies of the store made before the rotation (backups, snapshots) then
no longer give up any key, erased or not, to whoever holds them.

The privacy service must not run meanwhile, and the tool checks: with
--data-dir (the default) parley must be stopped, as the tool opens the
store itself, and a data dir a running process owns is refused; with
--nats-url it refuses while any privacy instance answers on the bus. From
its start until it completes no key is wrapped and no privacy instance
starts; after, only one holding the new KEK starts.

The KEK is read from PARLEY_KEK or from --kek-file (default
DATA_DIR/kek.key), not both. In a file, the new KEK is written over the old one's
bytes, in place. With PARLEY_KEK the tool cannot change where it came from:
it writes the new KEK to --new-kek-file, and the old value must then be
replaced and destroyed wherever it is kept.

A rotation that stops half way keeps its new KEK in KEK_FILE.next (or in
--new-kek-file) and resumes when run again.

`

// nextKEKSuffix names the file that holds a rotation's new KEK until the
// rotation completed.
const nextKEKSuffix = ".next"

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var store storeFlags
	flags := flag.NewFlagSet("parley keys rotate", flag.ContinueOnError)
	store.register(flags)
	kekFile := flags.String("kek-file", "", "the KEK file to rotate (default DATA_DIR/kek.key)")
	newKEKFile := flags.String("new-kek-file", "", "where to write the new KEK when the old one comes from PARLEY_KEK")
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), keysUsage)
		flags.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "rotate" {
		return noSubcommand("keys", flags, args, stdout, stderr)
	}
	if err := parseFlags(flags, args[1:], stdout, stderr); err != nil {
		return err
	}
	if err := oneKEKSource(*kekFile); err != nil {
		return err
	}
	if *kekFile == "" {
		*kekFile = filepath.Join(store.dataDir, "kek.key")
	}
	_, fromEnv := os.LookupEnv("PARLEY_KEK")
	if fromEnv && *newKEKFile == "" {
		return usageError{"the KEK comes from PARLEY_KEK: pass --new-kek-file for the new one"}
	}
	oldKEK, err := loadKEK(*kekFile, false)
	if errors.Is(err, fs.ErrNotExist) {
		return usageError{fmt.Sprintf("no KEK at %s: pass --kek-file or set PARLEY_KEK", *kekFile)}
	}
	if err != nil {
		return err
	}
	// Opened, and with --data-dir locked, before the new KEK is written
	// beside the old one.
	nc, closeStore, err := store.open("keys")
	if err != nil {
		return err
	}
	defer closeStore()
	// Before anything is printed or written: a refused rotation must not
	// look like one that started.
	if err := privacy.NoneServing(ctx, nc); err != nil {
		return refusedRotation(err)
	}
	nextFile := *newKEKFile
	if !fromEnv {
		nextFile = *kekFile + nextKEKSuffix
	}
	// Made once and kept until the rotation completed, so that a rotation
	// run again after a crash resumes with the same new KEK.
	newKEK, err := privacy.LoadOrCreateKEK(nextFile)
	if err != nil {
		return err
	}
	if newKEK == oldKEK {
		// The KEK file was overwritten and the rotation stopped before it
		// removed the new KEK's second copy; or PARLEY_KEK holds the new
		// KEK already.
		if !fromEnv {
			if err := os.Remove(nextFile); err != nil {
				return fmt.Errorf("remove %s: %w", nextFile, err)
			}
		}
		fmt.Fprintf(stdout, "the key-encryption key %s is current already\n", privacy.KEKID(newKEK))
		return nil
	}

	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	fmt.Fprintf(stdout, "rotating the key-encryption key %s to %s\n", privacy.KEKID(oldKEK), privacy.KEKID(newKEK))
	rep, err := privacy.RotateKEK(ctx, js, oldKEK, newKEK, progressPrinter(stdout))
	if err != nil {
		fmt.Fprintln(stdout)
		if errors.Is(err, privacy.ErrServing) {
			return refusedRotation(err)
		}
		return fmt.Errorf("%w\nnothing is lost: run the rotation again to resume; the old KEK is kept until it completes", err)
	}
	fmt.Fprintf(stdout, "\nre-wrapped %d subjects' keys (%d already re-wrapped), skipped %d erased subjects; resealed %d bots' and integrations' secrets (%d already resealed)\n",
		rep.Rewrapped, rep.AlreadyRewrapped, rep.Tombstones, rep.ResealedSecrets, rep.AlreadyResealed)

	if fromEnv {
		fmt.Fprintf(stdout, "the new KEK is in %s: set PARLEY_KEK to it, start the privacy service, and destroy the old value wherever it is kept\n", nextFile)
		return nil
	}
	if err := privacy.OverwriteKEK(*kekFile, newKEK); err != nil {
		return fmt.Errorf("%w\nthe store is re-wrapped under the new KEK, which is in %s: move it to %s", err, nextFile, *kekFile)
	}
	if err := os.Remove(nextFile); err != nil {
		return fmt.Errorf("remove %s: %w", nextFile, err)
	}
	fmt.Fprintf(stdout, "the old KEK is destroyed: %s now holds the new one\n", *kekFile)
	return nil
}

// refusedRotation is the error of a rotation refused because a privacy
// instance is serving.
func refusedRotation(err error) error {
	return fmt.Errorf("keys rotate refused: an instance is serving, so nothing was rotated; stop every privacy instance and run it again\n%w", err)
}

// progressPrinter returns a progress function that keeps one line of the
// terminal up to date, writing at most about a hundred times however many
// records there are.
func progressPrinter(w io.Writer) func(done, total int) {
	step := 1
	return func(done, total int) {
		if total > 100 {
			step = total / 100
		}
		if done%step == 0 || done == total {
			fmt.Fprintf(w, "\rre-wrapping keys: %d/%d", done, max(done, total))
		}
	}
}
