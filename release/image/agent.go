package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// platform is what the agent's image needs to know of an architecture.
type platform struct {
	machine elf.Machine
	// tuple is Debian's multiarch name: glibc's loader searches
	// /lib/TUPLE without an ld.so.cache, and the NVIDIA container toolkit
	// mounts the driver's libraries into /usr/lib/TUPLE.
	tuple string
}

var platforms = map[string]platform{
	"amd64": {machine: elf.EM_X86_64, tuple: "x86_64-linux-gnu"},
	"arm64": {machine: elf.EM_AARCH64, tuple: "aarch64-linux-gnu"},
}

// nvmlNeeds are the libraries the driver's libnvidia-ml.so.1 links
// against: go-nvml's dlopen of it fails unless the image has them.
var nvmlNeeds = []string{"libc.so.6", "libdl.so.2", "libm.so.6", "libpthread.so.0", "librt.so.1"}

// glibcID is how libc.so.6 names itself, as it prints when run:
// "GNU C Library (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36."
var glibcID = regexp.MustCompile(`GNU C Library \(([^)]+)\) [a-z ]*release version ([0-9]+(?:\.[0-9]+)*)`)

// agent is navarch-agent's image. The agent is built with cgo so that
// go-nvml can dlopen the driver's libnvidia-ml.so.1, which the NVIDIA
// container toolkit mounts into the container when it starts; both need
// glibc, so the image carries the one the agent was linked against: the
// loader where the binary's ELF interpreter names it, and the libraries
// the binary and NVML need under /lib/TUPLE. LD_LIBRARY_PATH names the
// directories the toolkit mounts the driver's libraries into, as the
// image has no ldconfig to make a cache of them. It runs as root: the
// DaemonSet bounds it with capabilities.
func agent(o Options, binary []byte) (component, error) {
	p, ok := platforms[o.Arch]
	if !ok {
		return component{}, fmt.Errorf("the agent's image is not made for %s", o.Arch)
	}
	if o.Libc == "" {
		return component{}, errors.New("the agent needs --libc: the directory of the glibc it was linked against")
	}
	interp, needed, err := dynamic(binary, p.machine)
	if err != nil {
		return component{}, fmt.Errorf("read the agent's binary: %w", err)
	}
	if interp == "" {
		return component{}, errors.New("the agent's binary names no ELF interpreter: it was not built with cgo")
	}
	loaderPath := filepath.Join(o.Libc, path.Base(interp))
	loader, err := os.ReadFile(loaderPath)
	if err != nil {
		return component{}, fmt.Errorf("read the loader: %w", err)
	}
	if _, _, err := dynamic(loader, p.machine); err != nil {
		return component{}, fmt.Errorf("read the loader %s: %w", loaderPath, err)
	}
	libs, err := libraries(o.Libc, p.machine, append(needed, nvmlNeeds...), path.Base(interp))
	if err != nil {
		return component{}, err
	}
	glibc, ok := glibcLabel(libs["libc.so.6"].contents)
	if !ok {
		return component{}, fmt.Errorf("%s has no GNU C Library version: is %s glibc's?", filepath.Join(o.Libc, "libc.so.6"), o.Libc)
	}
	files := []file{
		{name: interp, mode: 0o755, contents: loader},
		{name: "/root", mode: 0o700, dir: true},
		// Where the toolkit mounts the driver's libraries; there, so that
		// its mounts need not make them.
		{name: "/usr/lib/" + p.tuple, mode: 0o755, dir: true},
		{name: "/usr/lib64", mode: 0o755, dir: true},
	}
	for _, lib := range libs {
		lib.name = "/lib/" + p.tuple + "/" + lib.name
		files = append(files, lib)
	}
	return component{
		description: "Navarch agent for GPU nodes",
		licenses:    "Apache-2.0 AND LGPL-2.1-or-later",
		files:       files,
		config: v1.Config{
			User:       "0:0",
			Entrypoint: []string{"/usr/bin/navarch-agent"},
			Env: []string{
				"PATH=/usr/bin",
				"LD_LIBRARY_PATH=/usr/lib/" + p.tuple + ":/usr/lib64",
			},
		},
		labels: map[string]string{
			// The glibc in the image is the build machine's distribution's,
			// under the LGPL: its source is that distribution's glibc
			// package of this version.
			"io.github.navarch.glibc": glibc,
		},
	}, nil
}

// glibcLabel names the glibc whose libc.so.6 is libc, with its
// distribution's version, and its licence.
func glibcLabel(libc []byte) (string, bool) {
	id := glibcID.FindSubmatch(libc)
	if id == nil {
		return "", false
	}
	return fmt.Sprintf("%s (GNU C Library %s, LGPL-2.1-or-later)", id[1], id[2]), true
}

// libraries reads the shared libraries want names from dir, with those
// they need in turn, as layer files named by their sonames. The loader
// is left out: it is in the image as the interpreter, and satisfies
// libc's need of it by its soname.
func libraries(dir string, machine elf.Machine, want []string, loader string) (map[string]file, error) {
	libs := map[string]file{}
	for len(want) > 0 {
		soname := want[0]
		want = want[1:]
		if _, done := libs[soname]; done || soname == loader {
			continue
		}
		p := filepath.Join(dir, soname)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read a library the agent needs: %w", err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read a library the agent needs: %w", err)
		}
		_, needed, err := dynamic(data, machine)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		libs[soname] = file{name: soname, mode: int64(fi.Mode().Perm()), contents: data}
		want = append(want, needed...)
	}
	return libs, nil
}

// dynamic reads an ELF file built for machine: its interpreter, if it
// names one, and the shared libraries it needs.
func dynamic(data []byte, machine elf.Machine) (interp string, needed []string, err error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return "", nil, err
	}
	if f.Machine != machine {
		return "", nil, fmt.Errorf("built for %s, not %s", f.Machine, machine)
	}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", nil, fmt.Errorf("read the interpreter: %w", err)
		}
		interp = string(bytes.TrimRight(b, "\x00"))
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("read the libraries it needs: %w", err)
	}
	return interp, needed, nil
}
