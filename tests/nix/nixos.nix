# Stand-ins for the NixOS options nix/module.nix sets, typed loosely: the test evaluates the
# module with `lib.evalModules` alone (no nixpkgs, no NixOS), then reads what it set.
{ lib, ... }:

let
  inherit (lib) mkOption types;
  anything = mkOption { type = types.anything; default = null; };
in {
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    environment.systemPackages = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    environment.etc = mkOption {
      type = types.attrsOf (types.submodule { options.source = mkOption { type = types.unspecified; }; });
      default = { };
    };
    systemd.package = mkOption { type = types.unspecified; };
    systemd.generators = mkOption { type = types.attrsOf types.str; default = { }; };
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    systemd.services = mkOption { type = types.attrsOf types.anything; default = { }; };
    services.dbus.packages = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    users.users = mkOption { type = types.attrsOf types.anything; default = { }; };
    system.checks = mkOption { type = types.listOf types.unspecified; default = [ ]; };
  };
}
