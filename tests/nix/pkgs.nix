# A stand-in for the `pkgs` nix/module.nix uses. Packages are directories the test made
# (`{ outPath = DIR; }`, DIR/bin holding symlinks to this machine's tools); derivations the
# module builds are attribute sets that keep their inputs, so the test can read them.
{ lib, dirs }:

let
  package = name: { type = "derivation"; inherit name; outPath = dirs.${name}; };
  # `outPath` is a plain string: the store is never written.
  derivation = name: attrs: attrs // { inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  self = {
    # As in nixpkgs' pkgs-lib/formats.nix: the value type TOML can hold; `generate` keeps
    # the value (nixpkgs runs json2toml on it; the test renders it with the toml crate).
    formats.toml = { }: {
      type = with lib.types;
        let valueType = oneOf [ bool int float str path (attrsOf valueType) (listOf valueType) ]
          // { description = "TOML value"; };
        in valueType;
      generate = name: value: derivation name { inherit value; };
    };
    backupctl = package "backupctl" // {
      tools = [ (package "restic") (package "rsync") ];
    };
    # What the module takes from pkgs when the package has no `tools`.
    restic = package "restic";
    rsync = package "rsync";
    rclone = package "rclone";
    git = package "git";
    openssh = package "openssh";
    btrfs-progs = package "btrfs-progs";
    cryptsetup = package "cryptsetup";
    cifs-utils = package "cifs-utils";
    util-linux = package "util-linux";
    bash = package "bash";
    sqlite = package "sqlite";
    postgresql = package "postgresql";
    mariadb = package "mariadb";
    tzdata = package "tzdata";
    coreutils = package "coreutils";
    findutils = package "findutils";
    gnugrep = package "gnugrep";
    gnused = package "gnused";
    systemd = package "systemd";
    writeTextDir = path: text: derivation (baseNameOf path) { inherit path text; };
    runCommand = name: env: command: derivation name { inherit command env; };
    stdenv.buildPlatform.canExecute = _: true;
    stdenv.hostPlatform = { };
    buildPackages = self;
  };
in self
