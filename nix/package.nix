# backupctl as a Nix package: `nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/package.nix {}'`.
# The tools the stages run are wrapped into PATH, so `backupctl` finds them without a profile,
# and BACKUPCTL_BINARY makes `generate` and the generator write the wrapper (not the
# `.backupctl-wrapped` binary behind it) into the units' ExecStart=, so the units get that
# PATH too. The NixOS module also writes the same tools into the units' PATH (`[units] path`).
{ lib, stdenv, buildPackages, rustPlatform, makeWrapper, pkg-config, installShellFiles
, rsync, restic, rclone, git, openssh, btrfs-progs, cryptsetup, cifs-utils, util-linux }:

let
  # What the stage kinds run: rsync, restic, rclone, git (+ ssh), btrfs snapshots, stores
  # (cryptsetup, mount.cifs, mount/umount).
  tools = [ rsync restic rclone git openssh btrfs-progs cryptsetup cifs-utils util-linux ];
in
rustPlatform.buildRustPackage {
  pname = "backupctl";
  version = (lib.importTOML ../Cargo.toml).package.version;
  # Only what the build reads: not target/ (gigabytes), .git or editor files. `config-page`
  # embeds examples/full.toml and the journal messages units/backupctl.catalog
  # (`include_str!`); tests/nixos_module.rs builds exactly these files.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../units
      ../examples/full.toml
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ makeWrapper pkg-config installShellFiles ];
  # The test suite drives a real systemd user manager and servers; it runs in CI, not here.
  doCheck = false;

  # The man pages and completions come from the binary itself: run on the build machine
  # through an emulator when cross-compiling (as nixpkgs packages do), left out when there
  # is none. Nothing else here runs the binary, so a cross build never breaks on it.
  postInstall = lib.optionalString (stdenv.hostPlatform.emulatorAvailable buildPackages) (
    let backupctl = "${stdenv.hostPlatform.emulator buildPackages} $out/bin/backupctl"; in ''
      ${backupctl} man --dir man
      installManPage man/*.1 man/*.5
      installShellCompletion --cmd backupctl \
        --bash <(${backupctl} completions bash) \
        --zsh <(${backupctl} completions zsh) \
        --fish <(${backupctl} completions fish)
    '') + ''
    install -Dm644 units/*.catalog -t $out/lib/systemd/catalog
    install -Dm644 units/*.conf -t $out/share/dbus-1/system.d
    mkdir -p $out/lib/systemd/system-generators $out/lib/systemd/user-generators
    ln -s $out/bin/backupctl $out/lib/systemd/system-generators/backupctl-generator
    ln -s $out/bin/backupctl $out/lib/systemd/user-generators/backupctl-generator
    # `--suffix`: the units' PATH (`[units] path`) and the admin's own come first, so
    # `extraPackages` (the module's) can replace the restic or rsync given here.
    wrapProgram $out/bin/backupctl \
      --suffix PATH : ${lib.makeBinPath tools} \
      --set BACKUPCTL_BINARY $out/bin/backupctl
  '';

  # The NixOS module puts these into the units' PATH (`[units] path`).
  passthru = { inherit tools; };

  meta = {
    description = "systemd-native backups: units generated from a TOML config, stages run by systemd";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "backupctl";
    platforms = lib.platforms.linux;
  };
}
