# NixOS module: `services.backupctl.settings` is the TOML config (see the README's config
# reference); the units come from backupctl's own generator at every `nixos-rebuild switch`
# (daemon-reload), so the NixOS module and `backupctl generate` can never disagree.
#
#   imports = [ ./nix/module.nix ];
#   services.backupctl = {
#     enable = true;
#     settings = {
#       job.schedule = "*-*-* 03:00:00";
#       stage.hello.kind = "hello";
#       stage.home = {
#         kind = "restic";
#         repository = "sftp:backup@nas:/srv/restic";
#         password_file = "/root/restic-password";
#         paths = [ "/home" ];
#         snapshot = "btrfs";
#       };
#     };
#   };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.backupctl;
  toml = pkgs.formats.toml { };
in {
  options.services.backupctl = {
    enable = lib.mkEnableOption "backupctl, systemd-native backups";
    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      description = "The backupctl package.";
    };
    settings = lib.mkOption {
      type = toml.type;
      default = { };
      description = "The config, written to /etc/backupctl/config.toml (see the README).";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."backupctl/config.toml".source = toml.generate "backupctl.toml" cfg.settings;
    # The generator turns the config into backup-job.service, backup-job.timer and the stages.
    systemd.packages = [ cfg.package ];
    services.dbus.packages = [ cfg.package ];
    # A config that does not validate fails the build, not the backup at 3 am.
    system.checks = [
      (pkgs.runCommand "backupctl-config-check" { } ''
        ${cfg.package}/bin/backupctl --config ${toml.generate "backupctl.toml" cfg.settings} check > $out
      '')
    ];
  };
}
