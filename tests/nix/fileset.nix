# The files nix/package.nix's source (`lib.fileset.toSource`) selects, relative to the
# repository, for the test in tests/nixos_module.rs that builds exactly them. The fileset is
# package.nix's own expression: `toSource` is replaced by a function that hands back its
# arguments, and `lib.fileset.toList` lists them. Argument: `lib` (nixpkgs-lib's lib/).
#
# Nix < 2.14 (Debian 12 has 2.8) lacks `builtins.readFileType`, which `lib.filesystem.pathType`
# (and so lib.fileset) is built on: the shim nixpkgs 23.11 had for older Nix stands in.
{ lib }:

let
  base = import lib;
  patched = base.extend (final: prev: {
    filesystem = prev.filesystem // {
      pathType = builtins.readFileType or (path:
        if !builtins.pathExists path
        then throw "lib.filesystem.pathType: Path ${toString path} does not exist."
        else if dirOf path == path then "directory"
        else (builtins.readDir (dirOf path)).${baseNameOf path});
    };
    fileset = prev.fileset // { toSource = args: args; };
  });
  function = import ../../nix/package.nix;
  # Every argument package.nix takes; only `lib` and `rustPlatform` are looked at to reach `src`.
  stub = name: { inherit name; outPath = "/nonexistent/${name}"; };
  arguments = builtins.mapAttrs (name: _: stub name) (builtins.functionArgs function) // {
    lib = patched;
    rustPlatform.buildRustPackage = attrs: attrs;
  };
  source = (function arguments).src;
  root = toString source.root;
in
map (path: patched.removePrefix "${root}/" (toString path)) (patched.fileset.toList source.fileset)
