# NixOS module: `services.backupctl` turns a config written in Nix into
# /etc/backupctl/config.toml; backupctl's own generator turns that into the units at every
# `nixos-rebuild switch` (daemon-reload), so the NixOS module and `backupctl generate` can
# never disagree. The README's "NixOS" section documents every option.
#
#   imports = [ ./nix/module.nix ];
#   services.backupctl = {
#     enable = true;
#     settings.job.schedule = "*-*-* 03:00:00";
#     stages = [                       # a list: the stages run in this order
#       { name = "hello"; kind = "hello"; }
#       { name = "home"; kind = "restic";
#         repository = "sftp:backup@nas:/srv/restic";
#         password_file = "/root/restic-password";   # a string: never a Nix path
#         paths = [ "/home" ]; }
#     ];
#   };
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;

  cfg = config.services.backupctl;
  toml = pkgs.formats.toml { };

  # Keys whose value names a file that may hold a secret, or maps names to such files: a Nix
  # path there would be copied into the world-readable /nix/store. `exclude_file` holds
  # patterns, not secrets: `exclude_file = [ ./excludes ]` is fine.
  nonSecretFileKeys = [ "exclude_file" ];
  isSecretKey = name: !(lib.elem name nonSecretFileKeys) && (
    lib.hasSuffix "_file" name || lib.hasSuffix "_files" name
    || lib.hasSuffix "_credential" name || lib.hasSuffix "_credentials" name
    || name == "keyfile" || name == "ssh_key");

  # "settings.stage.home.password_file" for every Nix path under a secret key.
  nixPathsUnderSecretKeys = prefix: value:
    if builtins.isAttrs value then
      lib.concatLists (lib.mapAttrsToList (name: inner:
        let where = "${prefix}.${name}"; in
        if isSecretKey name && containsPath inner then [ where ]
        else nixPathsUnderSecretKeys where inner) value)
    else if builtins.isList value then
      lib.concatLists (lib.imap0 (i: nixPathsUnderSecretKeys "${prefix}[${toString i}]") value)
    else [ ];
  containsPath = value:
    if builtins.isPath value then true
    else if builtins.isAttrs value then lib.any containsPath (lib.attrValues value)
    else if builtins.isList value then lib.any containsPath value
    else false;

  # Typed options are null when unset; TOML has no null.
  withoutNulls = value:
    if builtins.isAttrs value then
      lib.mapAttrs (_: withoutNulls) (lib.filterAttrs (_: v: v != null) value)
    else if builtins.isList value then map withoutNulls value
    else value;

  # A string that names a file on the machine; a Nix path is refused by an assertion (see
  # `secretPaths` below) with a message that says what to write instead.
  fileName = types.either types.str types.path;

  # Bandwidth (the README's "Conditions and bandwidth"), as the tools' own flags: a job's apply
  # to those of its stages whose kind takes the key, a stage's override its job's.
  bandwidthOptions = {
    upload_limit = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "08:00 1M, 19:00 off";
      description = ''
        restic, rclone: a rate ("1M", "500K", "off") or a timetable of rates by time of day.
        restic keeps the rate in effect when it starts; rclone follows the timetable.
      '';
    };
    download_limit = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "restic, rclone: as `upload_limit`, for what the tool receives.";
    };
    bandwidth = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "2M";
      description = "rsync: `--bwlimit`, a rate or a timetable (the rate at start applies).";
    };
  };

  # Resource limits (`memory_high`, …), typed and documented once: a job's apply to all its
  # stages, a stage's override its job's, and `settings.slice` caps all stages together in
  # backup.slice. Each becomes one systemd directive (README, "Resource limits").
  limitOptions = {
    memory_high = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "512M";
      description = "`MemoryHigh=`: above it the kernel throttles the stage (K, M, G, T; \"50%\"; \"infinity\").";
    };
    memory_max = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "2G";
      description = "`MemoryMax=`: above it the OOM killer ends the stage, which `backupctl status` reports as killed by this limit.";
    };
    memory_swap_max = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "0";
      description = "`MemorySwapMax=`: swap the stage may use.";
    };
    io_weight = mkOption {
      type = types.nullOr (types.ints.between 1 10000);
      default = null;
      description = "`IOWeight=` (default 100).";
    };
    io_read_bandwidth = mkOption {
      type = types.nullOr (types.attrsOf types.str);
      default = null;
      example = { "/dev/sda" = "50M"; };
      description = "`IOReadBandwidthMax=`: bytes per second per block device or path.";
    };
    io_write_bandwidth = mkOption {
      type = types.nullOr (types.attrsOf types.str);
      default = null;
      example = { "/srv/backup" = "20M"; };
      description = "`IOWriteBandwidthMax=`: bytes per second per block device or path.";
    };
    cpu_quota = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "50%";
      description = "`CPUQuota=`: percent of one CPU.";
    };
    tasks_max = mkOption {
      type = types.nullOr (types.either types.ints.positive types.str);
      default = null;
      example = 512;
      description = "`TasksMax=`: processes and threads at once (or \"infinity\").";
    };
  };

  commonStageOptions = {
    kind = mkOption {
      type = types.str;
      example = "restic";
      description = "The stage kind: hello, exec, rsync, restic, git, rclone, gitrepos, manifest, postgresql, mysql or sqlite.";
    };
    after = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "hello" ];
      description = ''
        The stages this one runs after. In `stages` (a list) the default is the previous
        stage of the same job; in `settings.stage` (an attribute set, which Nix sorts by
        name) every stage of a job with more than one stage must say it (`[ ]` for none).
      '';
    };
    job = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "The job (`settings.jobs.NAME`) this stage belongs to; default: `job`.";
    };
    required = mkOption {
      type = types.nullOr types.bool;
      default = null;
      description = "`false`: the stage may fail without failing its job (default: true).";
    };
    password_file = mkOption {
      type = types.nullOr fileName;
      default = null;
      example = "/root/restic-password";
      description = ''
        restic: the file holding the repository password, as a string. Never a Nix path
        (`./secret`): it would be copied into the world-readable /nix/store.
      '';
    };
    repository_file = mkOption {
      type = types.nullOr fileName;
      default = null;
      description = "restic: the file holding the repository location, as a string (never a Nix path).";
    };
    repository = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "sftp:backup@nas:/srv/restic";
      description = "restic: the repository location.";
    };
    paths = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "/home" "/etc" ];
      description = "restic: what to back up.";
    };
    sources = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      description = "rsync, git, manifest: what to copy.";
    };
    destination = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "rsync, rclone: where to copy to.";
    };

    # Conditions (the README's "Conditions and bandwidth"): skipped, not failed, on battery
    # or a metered connection. Bandwidth: `bandwidthOptions`.
    on_ac_power = mkOption {
      type = types.nullOr types.bool;
      default = null;
      description = "`true`: skip the stage on battery (`ConditionACPower=true`).";
    };
    skip_on_metered = mkOption {
      type = types.nullOr types.bool;
      default = null;
      description = ''
        `true`: skip the stage when NetworkManager says the connection is metered or guesses
        so (an `ExecCondition=` of backupctl; runs, with a note, without NetworkManager).
      '';
    };

    # The database kinds (docs/databases.md): typed, rendered under their own names.
    databases = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "shop" ];
      description = ''
        postgresql, mysql: the databases to dump (default `[ "all" ]`: found at run time);
        sqlite: the database files.
      '';
    };
    exclude_databases = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      description = "postgresql, mysql: databases left out of `[ \"all\" ]`.";
    };
    host = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/postgresql";
      description = "postgresql, mysql: a socket (directory) or a host name; restic: the host recorded in snapshots.";
    };
    port = mkOption {
      type = types.nullOr types.port;
      default = null;
      description = "postgresql, mysql: the server's TCP port.";
    };
    username = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "postgresql, mysql: the role or account to connect as (default: the job's user).";
    };
    password_credential = mkOption {
      type = types.nullOr fileName;
      default = null;
      description = "postgresql, mysql, restic: the password file, loaded as a systemd credential (never a Nix path).";
    };
    maintenance_database = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "postgresql: where the list of databases is asked for (default postgres).";
    };
    format = mkOption {
      type = types.nullOr (types.enum [ "custom" "plain" "directory" ]);
      default = null;
      description = "postgresql: pg_dump's format (default custom; directory only with `directory`).";
    };
    jobs = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      description = "postgresql, format = directory: pg_dump's and pg_restore's parallel jobs.";
    };
    globals = mkOption {
      type = types.nullOr types.bool;
      default = null;
      description = "postgresql: also dump roles and tablespaces as globals.sql (default true).";
    };
    directory = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/backups/postgresql";
      description = "postgresql, mysql, sqlite: write the dumps into this directory.";
    };
    restic = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "offsite";
      description = "postgresql, mysql, sqlite: stream the dumps into this restic stage's repository.";
    };
    checks = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "SELECT count(*) FROM orders" ];
      description = "postgresql, mysql, sqlite: queries answered at dump time; a drill compares the restored database's answers.";
    };
    # What a services.restic.backups user would miss, in its names; rendered as the TOML keys
    # of the README's reference (see `stageToml`).
    environmentFile = mkOption {
      type = types.nullOr (types.either types.str (types.listOf types.str));
      default = null;
      example = "/etc/backupctl/b2.env";
      description = ''
        `environment_file`: file(s) of `KEY=value` lines for the stage's tool (restic's
        backend keys, `B2_ACCOUNT_KEY=…`), read by systemd (`EnvironmentFile=`). Absolute
        path strings, never Nix paths (they hold secrets).
      '';
    };
    package = mkOption {
      type = types.nullOr types.package;
      default = null;
      example = lib.literalExpression "pkgs.restic";
      description = "restic: the restic package this stage runs (`restic_binary`); default: the one in PATH.";
    };
    dynamicFilesFrom = mkOption {
      type = types.nullOr types.lines;
      default = null;
      example = "find /home/sig/Documents -newer /var/lib/last-backup -type f";
      description = ''
        restic: a shell script whose output (one path a line) is what to back up
        (`files_from_command`, given to `restic backup --files-from`).
      '';
    };
    checkOpts = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "--read-data-subset=5%" ];
      description = "restic: extra arguments of `restic check` (`check_args`).";
    };
    pruneOpts = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "--keep-tag" "important" ];
      description = "restic: extra arguments of `restic forget --prune` (`forget_args`).";
    };
  };

  # A stage's options in services.restic.backups' names, as the TOML keys the loader reads.
  stageToml = stage:
    builtins.removeAttrs stage [ "environmentFile" "package" "dynamicFilesFrom" "checkOpts" "pruneOpts" ]
    // lib.optionalAttrs (stage.environmentFile or null != null) {
      environment_file = stage.environmentFile;
    }
    // lib.optionalAttrs (stage.package or null != null) {
      restic_binary = "${lib.getBin stage.package}/bin/restic";
    }
    // lib.optionalAttrs (stage.dynamicFilesFrom or null != null) {
      files_from_command = [ "${pkgs.bash}/bin/bash" "-c" stage.dynamicFilesFrom ];
    }
    // lib.optionalAttrs (stage.checkOpts or null != null) { check_args = stage.checkOpts; }
    // lib.optionalAttrs (stage.pruneOpts or null != null) { forget_args = stage.pruneOpts; };

  # `timerConfig` (restic.nix's name): the directives backupctl has a key of its own for
  # become that key (the loader refuses them in `timer`, so a restic.nix config with
  # `Persistent = true` keeps working), unless the job sets the key itself; the rest is the
  # job's `timer` table, [Timer] directives the loader checks and passes through.
  typedTimerKeys = {
    OnCalendar = "schedule";
    Persistent = "persistent";
    RandomizedDelaySec = "randomized_delay";
    OnBootSec = "on_boot";
    AccuracySec = "accuracy";
    WakeSystem = "wake_system";
  };
  # A bare number in a *Sec directive is seconds to systemd; backupctl's keys take a unit.
  typedTimerValue = value: if builtins.isInt value then "${toString value}s" else value;
  jobToml = job:
    let
      timer = if job.timerConfig or null == null then { } else job.timerConfig;
      typed = lib.mapAttrs' (name: value: lib.nameValuePair typedTimerKeys.${name} (typedTimerValue value))
        (lib.filterAttrs (name: _: typedTimerKeys ? ${name}) timer);
      rest = builtins.removeAttrs timer (builtins.attrNames typedTimerKeys);
    in
    builtins.removeAttrs job [ "timerConfig" ]
    // lib.filterAttrs (key: _: (job.${key} or null) == null) typed
    // lib.optionalAttrs (rest != { }) { timer = rest; };

  # A stage: the common keys typed and documented, every other key of the README's config
  # reference passed through as it is (freeform), checked by `backupctl check` at build time.
  stageModule = {
    freeformType = toml.type;
    options = commonStageOptions // limitOptions // bandwidthOptions;
  };
  namedStageModule = {
    freeformType = toml.type;
    options = commonStageOptions // limitOptions // bandwidthOptions // {
      name = mkOption {
        type = types.strMatching "[A-Za-z0-9_-]+";
        example = "home";
        description = "The stage name: its unit is `backup@NAME.service`.";
      };
    };
  };

  jobModule = {
    freeformType = toml.type;
    options = limitOptions // bandwidthOptions // {
      schedule = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "*-*-* 03:00:00";
        description = "`OnCalendar=` of the job's timer; no timer when unset.";
      };
      user = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''
          Run the job's stages as this user. The module lets this user own the stages' D-Bus
          names (`backupctl watch`).
        '';
      };
      group = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Run the job's stages with this group.";
      };
      timerConfig = mkOption {
        type = types.nullOr (types.attrsOf (types.oneOf [ types.str types.int types.bool ]));
        default = null;
        example = { RandomizedDelaySec = "1h"; Persistent = true; };
        description = ''
          `[Timer]` directives of the job's timer, as restic.nix takes them. Those backupctl has
          a key for (`OnCalendar`, `Persistent`, `RandomizedDelaySec`, `OnBootSec`,
          `AccuracySec`, `WakeSystem`) become that key unless the job sets it; the rest go to
          `timer`, where `backupctl check` refuses a name systemd does not know.
        '';
      };
    };
  };

  settingsModule = {
    freeformType = toml.type;
    options = {
      job = mkOption {
        type = types.submodule jobModule;
        default = { };
        description = "The default job: `backup-job.service` and `backup-job.timer`.";
      };
      jobs = mkOption {
        type = types.attrsOf (types.submodule jobModule);
        default = { };
        description = "More jobs: `backup-NAME.service` and `.timer`; stages join with `job = NAME`.";
      };
      slice = mkOption {
        type = types.submodule { options = limitOptions; };
        default = { };
        description = "Limits of backup.slice, which all stage units run in: they cap all stages together.";
      };
      stage = mkOption {
        type = types.attrsOf (types.submodule stageModule);
        default = { };
        description = ''
          Stages by name. Nix sorts attribute names, so file order is lost: give every stage
          of a job with several stages `after`, or use `services.backupctl.stages` (a list).
        '';
      };
    };
  };

  jobOf = stage: if stage.job or null == null then "job" else stage.job;

  # The list form, in order: a stage without `after` runs after the previous stage of its job
  # (the TOML file-order default), written out because the TOML is rendered sorted.
  listedStages = (lib.foldl' (acc: stage:
    let
      job = jobOf stage;
      previous = acc.last.${job} or null;
      body = builtins.removeAttrs stage [ "name" ]
        // lib.optionalAttrs (stage.after == null) {
          after = lib.optional (previous != null) previous;
        };
    in {
      last = acc.last // { ${job} = stage.name; };
      stage = acc.stage // { ${stage.name} = body; };
    }) { last = { }; stage = { }; } cfg.stages).stage;

  listedNames = map (stage: stage.name) cfg.stages;
  attrNamesOfStages = lib.attrNames cfg.settings.stage;
  duplicateNames = lib.filter (name: lib.elem name attrNamesOfStages) listedNames;

  # Jobs whose order Nix would have lost: more than one stage, one of them from
  # `settings.stage` without `after`.
  allStages = cfg.settings.stage // listedStages;
  stagesOfJob = job: lib.filterAttrs (_: stage: jobOf stage == job) allStages;
  unordered = lib.filter (name:
    let stage = cfg.settings.stage.${name}; in
    stage.after == null && lib.length (lib.attrNames (stagesOfJob (jobOf stage))) > 1)
    attrNamesOfStages;

  # Where the units look for tools: the package's own (rsync, restic, …), extraPackages, and
  # what NixOS gives its own services (`systemd.services.<name>.path`'s default).
  # extraPackages come first, so they can replace the package's restic or rsync (the
  # package's wrapper appends its own tools after the unit's PATH, never before).
  unitPath = map (package: "${lib.getBin package}/bin")
    (cfg.extraPackages ++ packageTools ++ databaseClients
      ++ [ pkgs.coreutils pkgs.findutils pkgs.gnugrep pkgs.gnused config.systemd.package ]);

  # The client tools of the database kinds in use (pg_dump, psql, pg_restore and, for a
  # drill, initdb and postgres; mysqldump and mysql; sqlite3), after extraPackages, so a
  # postgresql_16 there is the one found.
  kindsInUse = map (stage: stage.kind) (lib.attrValues allStages);
  databaseClients =
    lib.optional (lib.elem "postgresql" kindsInUse) pkgs.postgresql
    ++ lib.optional (lib.elem "mysql" kindsInUse) pkgs.mariadb
    ++ lib.optional (lib.elem "sqlite" kindsInUse) pkgs.sqlite;

  # The tools the stage kinds run: the package's `passthru.tools` (nix/package.nix), else for
  # a package built otherwise the same list from pkgs, so no stage loses its tools unseen.
  packageTools = cfg.package.tools or (map (name: pkgs.${name}) [
    "rsync" "restic" "rclone" "git" "openssh" "btrfs-progs" "cryptsetup" "cifs-utils" "util-linux"
  ]);

  # An empty [job] would be a job without stages (an error) when every stage has its `job`.
  finalSettings = lib.filterAttrs (name: value: !(lib.elem name [ "job" "jobs" ] && value == { }))
    (withoutNulls (cfg.settings // {
    job = jobToml cfg.settings.job;
    jobs = lib.mapAttrs (_: jobToml) cfg.settings.jobs;
    stage = lib.mapAttrs (_: stageToml) allStages;
    units = (cfg.settings.units or { }) // {
      path = (cfg.settings.units.path or [ ]) ++ unitPath;
    };
  }));

  configFile =
    if cfg.configFile != null then cfg.configFile
    else toml.generate "backupctl.toml" finalSettings;

  secretPaths = nixPathsUnderSecretKeys "services.backupctl.settings" cfg.settings
    ++ nixPathsUnderSecretKeys "services.backupctl.stages" cfg.stages;

  # The users jobs run as, which must own their stages' D-Bus names.
  jobUsers = lib.unique (lib.filter (user: user != null)
    ([ cfg.settings.job.user ] ++ lib.mapAttrsToList (_: job: job.user) cfg.settings.jobs
      ++ cfg.dbusUsers));
  # Job users the system does not declare: their stages would fail at 3 am with 217/USER.
  undeclaredUsers = lib.filter (user: !(config.users.users ? ${user}))
    (lib.filter (user: user != null)
      ([ cfg.settings.job.user ] ++ lib.mapAttrsToList (_: job: job.user) cfg.settings.jobs));
  dbusPolicy = pkgs.writeTextDir "share/dbus-1/system.d/io.github.backupctl.users.conf" ''
    <?xml version="1.0"?>
    <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
     "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
    <!-- Generated by the backupctl NixOS module: the users of jobs with `user = ...` own
         their stages' names, as root does in io.github.backupctl.conf. -->
    <busconfig>
    ${lib.concatMapStrings (user: ''
      <policy user="${lib.escapeXML user}">
        <allow own_prefix="io.github.backupctl"/>
      </policy>
    '') jobUsers}</busconfig>
  '';

  # The check runs at build time, on the build machine: a cross-built package cannot run
  # there, so it takes the build platform's backupctl then.
  checkPackage =
    if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then cfg.package
    else pkgs.buildPackages.backupctl or (pkgs.buildPackages.callPackage ./package.nix { });
in {
  options.services.backupctl = {
    enable = lib.mkEnableOption "backupctl, systemd-native backups";

    package = lib.mkPackageOption pkgs "backupctl" { } // {
      default = pkgs.backupctl or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression
        "pkgs.backupctl or (pkgs.callPackage ./nix/package.nix { })";
    };

    settings = mkOption {
      type = types.submodule settingsModule;
      default = { };
      example = lib.literalExpression ''
        {
          job.schedule = "*-*-* 03:00:00";
          stage.hello = { kind = "hello"; after = [ ]; };
          stage.home = {
            kind = "restic";
            after = [ "hello" ];
            repository = "sftp:backup@nas:/srv/restic";
            password_file = "/root/restic-password";
            paths = [ "/home" ];
            keep = { daily = 7; weekly = 5; };
          };
        }
      '';
      description = ''
        The config, written to /etc/backupctl/config.toml: the README's config reference,
        in Nix (RFC 42 freeform settings; common keys are typed). File names of secrets are
        strings, never Nix paths.
      '';
    };

    stages = mkOption {
      type = types.listOf (types.submodule namedStageModule);
      default = [ ];
      example = lib.literalExpression ''
        [
          { name = "hello"; kind = "hello"; }
          { name = "logseq"; kind = "rsync"; sources = [ "/home/sig/Logseq/" ]; destination = "/data/Logseq/"; }
          { name = "backblaze"; kind = "restic"; repository_file = "/etc/backupctl/b2-repository";
            password_file = "/etc/backupctl/restic-password"; paths = [ "/home" ]; }
        ]
      '';
      description = ''
        Stages in order, each with its `name`: without `after`, a stage runs after the previous
        stage of its job, as in a TOML file. Joined with `settings.stage`.
      '';
    };

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/nixos/backupctl.toml";
      description = ''
        A TOML config to use instead of `settings`/`stages` (it is copied into the store: no
        secrets in it). The module cannot add `[units] path` to it: list the tools'
        directories there yourself (see the README).
      '';
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.sqlite pkgs.postgresql ]";
      description = ''
        Packages whose `bin` goes into the units' PATH, e.g. for `exec` stages and
        `password_command`. The package's own tools (rsync, restic, rclone, git, ssh, btrfs,
        cryptsetup, mount.cifs) are always there, after these: a restic or rsync here
        replaces the package's.
      '';
    };

    dbusUsers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        More users allowed to own stage names on the system bus, for jobs in `configFile`
        with `user = ...` (those in `settings` are added by themselves).
      '';
    };

    catalog = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Install the journal message catalog: systemd reads catalogs only from
        /usr/lib/systemd/catalog and /usr/local/lib/systemd/catalog, so the module links it
        into the latter and runs `journalctl --update-catalog` (`journalctl -x` explains
        backupctl's messages).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = secretPaths == [ ];
        message = ''
          services.backupctl: ${lib.concatStringsSep ", " secretPaths} is a Nix path, which
          would copy the file into the world-readable /nix/store. Write the file name as a
          string ("/root/restic-password") and keep the file out of the store; for a file
          that is not secret, "''${./file}" says so explicitly.
        '';
      }
      {
        assertion = unordered == [ ];
        message = ''
          services.backupctl.settings.stage: Nix sorts attribute names, so the order of the
          stages is lost and ${lib.concatStringsSep ", " unordered} would run after whichever
          stage sorts before it. Give each of them `after = [ ... ];` (`[ ]` for the first),
          or list the stages in order in services.backupctl.stages.
        '';
      }
      {
        assertion = duplicateNames == [ ];
        message = "services.backupctl: stage ${lib.concatStringsSep ", " duplicateNames} is defined in both `stages` and `settings.stage`.";
      }
      {
        assertion = cfg.configFile == null || (cfg.stages == [ ] && cfg.settings.stage == { });
        message = "services.backupctl: `configFile` replaces `settings` and `stages`; set one or the other.";
      }
      {
        assertion = undeclaredUsers == [ ];
        message = ''
          services.backupctl: the job user(s) ${lib.concatStringsSep ", " undeclaredUsers} do not
          exist: declare each, e.g. users.users.${lib.head (undeclaredUsers ++ [ "NAME" ])} = {
          isSystemUser = true; group = "backup"; }; (and users.groups.backup = { };).
        '';
      }
      {
        assertion = cfg.configFile != null || allStages != { };
        message = "services.backupctl: no stages; add some to services.backupctl.stages (or settings.stage).";
      }
    ];

    environment.systemPackages = [ cfg.package ];
    environment.etc."backupctl/config.toml".source = configFile;

    # The generator writes backup-job.service, backup-job.timer and the stages' units at
    # every daemon-reload. `systemd.packages` installs units, not generators.
    systemd.generators.backupctl = "${cfg.package}/lib/systemd/system-generators/backupctl-generator";

    services.dbus.packages = [ cfg.package ] ++ lib.optional (jobUsers != [ ]) dbusPolicy;

    systemd.tmpfiles.rules = lib.optionals cfg.catalog [
      "d /usr/local/lib/systemd/catalog 0755 root root -"
      "L+ /usr/local/lib/systemd/catalog/backupctl.catalog - - - - ${cfg.package}/lib/systemd/catalog/backupctl.catalog"
    ];
    systemd.services.backupctl-catalog = lib.mkIf cfg.catalog {
      description = "Add backupctl's journal message catalog";
      wantedBy = [ "multi-user.target" ];
      after = [ "systemd-tmpfiles-setup.service" ];
      restartTriggers = [ cfg.package ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${config.systemd.package}/bin/journalctl --update-catalog";
      };
    };

    # A config that does not validate fails the build, not the backup at 3 am.
    system.checks = [
      # TZDIR: the sandbox has no zoneinfo; tzdata's is what NixOS's systemd reads too.
      (pkgs.buildPackages.runCommand "backupctl-config-check" {
        TZDIR = "${pkgs.tzdata}/share/zoneinfo";
      } ''
        ${checkPackage}/bin/backupctl --config ${configFile} check > $out
      '')
    ];
  };
}
