"""Build-host helper for the lambda_package role: inspect, complete, gate and zip a package.

Standard library only, Python 3.9+. The role packs this package into one zip application
(module r_lambda.release.zipapp), sends it to the build host (Debian or Amazon Linux, where
only python3 is certain; `ldd` comes with glibc) and runs it as
`python3 lambda_pkgtool.pyz SUBCOMMAND ...` (`python -m lambda_pkgtool` where the package is
installed, as in the project's virtualenv). One module per concern: common (errors, exit
codes, walking a tree, elf-list), closure, inventory, elf (reading symbol versions), glibc,
python_abi, archive (zip, split, sizes), prune, and cli (the argument parsers and main).

Subcommands (each prints one JSON value on stdout, an object but for elf-list's list, and
logs progress to stderr):

  elf-list --root DIR
      Every ELF file under DIR (by its 4 magic bytes; symlinks skipped), as a JSON list of
      sorted relative paths (the one subcommand whose output is a list, not an object).

  closure --root DIR --lib-dir DIR/lib [--search-dir D ...] [--exclude REGEX ...] [--dry-run]
      Copy into --lib-dir (as its soname, symlinks resolved, mode 0755) every shared library
      that some ELF under DIR loads, that lives outside DIR, and whose soname matches no
      --exclude pattern (re.fullmatch); repeat until a round copies nothing. The patterns
      name what the target runtime guarantees: the role passes lambda_package_exclude_libs,
      the glibc family. Resolution is `ldd` with LD_LIBRARY_PATH = lib-dir + search dirs
      (the in-package folders, e.g. DIR/R/lib).
      A dependency `ldd` reports "not found" after the fixed point is an error (exit 3)
      unless a file of that name exists somewhere inside DIR: such a library is loaded by
      its owner first (libR.so before R's modules), so it is reported in
      "resolved_in_package", not as an error.

  dists --root DIR --out FILE
      Save each Python distribution installed in DIR (*.dist-info: name, version, the files
      its RECORD lists) to FILE, before pruning removes dist-info folders and RECORDs.

  inventory --root DIR [--wheels W] [--dists FILE] [--lib-dir DIR/lib]
            [--library SONAME=SOURCE ...] [--file F ...]
      What the package holds, for the release's bill of materials: the Python distributions
      in DIR with the wheel or sdist in W each came from and its sha256 (one missing from W
      is an error): those dists saved in FILE of which a file or the dist-info is left
      (cffi ships _cffi_backend with its dist-info pruned), else the dist-info folders; the
      R packages under DIR/R/library with their versions; each library the closure copied
      with the sha256 of the copy and the distribution package that owns its source
      (dpkg-query -S, else rpm -qf; merged-/usr aliases tried); each --file with its sha256.

  glibc --root DIR [--max-version 2.34] [--max-glibcxx 3.4.29] [--max-cxxabi 1.3.13]
      Parse every ELF's version needs (SHT_GNU_verneed) in pure Python: ELF32/ELF64, little
      and big endian. Reports the newest GLIBC_x.y needed per file, GLIBCXX_/CXXABI_/GCC_
      needs and files bound to GLIBC_PRIVATE (they only work with the glibc they were built
      against: a warning). With --max-version, exit 4 if a file needs a newer GLIBC version
      than the ceiling (numeric comparison: 2.9 < 2.10); with --max-glibcxx or --max-cxxabi,
      exit 4 too if a file needs a newer GLIBCXX_ or CXXABI_ version (the target loads its
      own libstdc++ before a bundled one: C++ R packages such as ranger need these).

  zip --root DIR --out FILE [--level 9]
      Deterministic zip: regular files only (no directory entries, so empty directories are
      not kept), sorted by path, dated 1980-01-01 00:00:00, mode 0100755 if any exec bit is
      set else 0100644, create_system 3 (unix), deflate at --level. Symlinks are followed:
      the entry holds the target's content, so the package works wherever and however it is
      unzipped; a dangling symlink or a symlink loop is an error. FILE is written as FILE.tmp, then
      renamed. The same tree gives the same sha256 whatever the mtimes, the umask and the
      directory listing order (for a given zlib).

  split --root DIR --function NAME [NAME ...] --layer-out FILE --function-out FILE [--level 9]
      The same tree as two deterministic zips (as zip writes them) for a Lambda layer and a
      function: the function zip holds the named top-level files and their __pycache__
      bytecode; the layer zip holds the rest, R/ and lib/ as they are and every other entry
      under python/ (Lambda unpacks layers under /opt, puts /opt/python on sys.path and
      /opt/lib on the library path). A --function name missing from DIR is an error.

  sizes --zip FILE [--max-zip-bytes N] [--max-unzipped-bytes M]
      Read the central directory, measure each R package under R/library/ (unzipped and
      zipped bytes, files: "r_packages", largest first) and gate on the limits given (the
      role passes lambda_package_max_zip_bytes and lambda_package_max_unzipped_bytes:
      Lambda's 50 MiB zipped for a direct upload and 250 MiB unzipped). Exit 5 if over,
      naming the three largest R packages.

  prune --root DIR --pattern GLOB [GLOB ...] [--pattern GLOB ...]
      Remove files and folders matching glob patterns relative to DIR (pathlib syntax,
      `**` for any depth). Patterns that are absolute or contain '..' are refused, and so is
      any match that is DIR itself or lies outside DIR through a symlinked folder; all
      matches are checked before anything is removed.

  python-abi --root DIR --python X.Y
      Gate on the target's Python: every compiled extension module must be stable-ABI
      (NAME.abi3.so) or tagged for CPython X.Y (NAME.cpython-XY-*.so), and every bytecode
      file in a __pycache__ folder must be X.Y's (NAME.cpython-XY.pyc). Exit 6 naming the
      files that are built for another Python (or untagged, NAME.so inside a Python package,
      which only the Python that built it is sure to load).

Exit codes: 0 ok; 1 internal error (a bug); 2 bad input or a failed step (usage, missing
path, ldd failure, malformed ELF, dangling symlink...); 3 unresolved shared libraries;
4 glibc too new for the ceiling; 5 package too large; 6 built for another Python. On
failure, stderr gets one line "lambda_pkgtool: error: ..." and stdout a JSON object with
"error" (plus the gate's data).
"""
