# Evaluates nix/module.nix with nixpkgs' `lib.evalModules` against the stand-ins, for the
# test in tests/nixos_module.rs. Arguments (all strings): `lib` (nixpkgs-lib's lib/), `dirs`
# (stand-in package name -> directory) and `config` (a file holding a NixOS module that
# sets services.backupctl); optionally `backupctl = "bare"` (a package without
# `passthru.tools`) and `module = false` (the config imports the module itself).
{ lib, dirs, config, backupctl ? null, module ? true }:

let
  nixpkgsLib = import lib;
  standIns = import ./pkgs.nix { lib = nixpkgsLib; inherit dirs; };
  # `backupctl = "bare"`: a package without `passthru.tools`, as one not built by
  # nix/package.nix.
  pkgs = standIns // nixpkgsLib.optionalAttrs (backupctl == "bare") {
    backupctl = builtins.removeAttrs standIns.backupctl [ "tools" ];
  };
  evaluated = nixpkgsLib.evalModules {
    # `module = false`: the config imports nix/module.nix itself (the README's example).
    modules = nixpkgsLib.optional module ../../nix/module.nix ++ [
      ./nixos.nix
      { _module.args.pkgs = pkgs; systemd.package = pkgs.systemd; }
      config
    ];
  };
  cfg = evaluated.config;
  failed = map (a: a.message) (builtins.filter (a: !a.assertion) cfg.assertions);
in
if failed != [ ] then { assertions = failed; }
else {
  assertions = [ ];
  # What json2toml would turn into /etc/backupctl/config.toml.
  settings = cfg.environment.etc."backupctl/config.toml".source.value;
  generators = cfg.systemd.generators;
  dbus = map (p: p.text or (toString p)) cfg.services.dbus.packages;
  tmpfiles = cfg.systemd.tmpfiles.rules;
  catalogService = cfg.systemd.services.backupctl-catalog.serviceConfig.ExecStart;
  checks = map (c: c.command) cfg.system.checks;
  checkEnv = map (c: c.env) cfg.system.checks;
  # The units' PATH entries, in order.
  unitPath = cfg.environment.etc."backupctl/config.toml".source.value.units.path or [ ];
}
