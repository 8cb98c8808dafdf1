# Evaluates nix/module.nix with nixpkgs' `lib.evalModules` against the stand-ins, for the
# test in tests/nixos_module.rs. Arguments (all strings): `lib` (nixpkgs-lib's lib/), `dirs`
# (stand-in package name -> directory) and `config` (a file holding a NixOS module that
# sets services.backupctl).
{ lib, dirs, config }:

let
  nixpkgsLib = import lib;
  pkgs = import ./pkgs.nix { lib = nixpkgsLib; inherit dirs; };
  evaluated = nixpkgsLib.evalModules {
    modules = [
      ../../nix/module.nix
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
}
