# backupctl as a Nix package: `nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/package.nix {}'`.
# The tools the stages run are wrapped into PATH, so `backupctl` finds them without a profile,
# and BACKUPCTL_BINARY makes `generate` and the generator write the wrapper (not the
# `.backupctl-wrapped` binary behind it) into the units' ExecStart=, so the units get that
# PATH too. The NixOS module also writes the same tools into the units' PATH (`[units] path`).
{ lib, rustPlatform, makeWrapper, pkg-config, installShellFiles
, rsync, restic, rclone, git, openssh, btrfs-progs, cryptsetup, cifs-utils, util-linux }:

let
  # What the stage kinds run: rsync, restic, rclone, git (+ ssh), btrfs snapshots, stores
  # (cryptsetup, mount.cifs, mount/umount).
  tools = [ rsync restic rclone git openssh btrfs-progs cryptsetup cifs-utils util-linux ];
in
rustPlatform.buildRustPackage {
  pname = "backupctl";
  version = (lib.importTOML ../Cargo.toml).package.version;
  # Only what the build reads: not target/ (gigabytes), .git or editor files.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../units
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ makeWrapper pkg-config installShellFiles ];
  # The test suite drives a real systemd user manager and servers; it runs in CI, not here.
  doCheck = false;

  postInstall = ''
    $out/bin/backupctl man --dir man
    installManPage man/*.1 man/*.5
    installShellCompletion --cmd backupctl \
      --bash <($out/bin/backupctl completions bash) \
      --zsh <($out/bin/backupctl completions zsh) \
      --fish <($out/bin/backupctl completions fish)
    install -Dm644 units/*.catalog -t $out/lib/systemd/catalog
    install -Dm644 units/*.conf -t $out/share/dbus-1/system.d
    mkdir -p $out/lib/systemd/system-generators $out/lib/systemd/user-generators
    ln -s $out/bin/backupctl $out/lib/systemd/system-generators/backupctl-generator
    ln -s $out/bin/backupctl $out/lib/systemd/user-generators/backupctl-generator
    wrapProgram $out/bin/backupctl \
      --prefix PATH : ${lib.makeBinPath tools} \
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
