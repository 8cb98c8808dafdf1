# nix/package.nix's postInstall for a build machine that can run the host's binary
# (`emulator = true`: natively or through an emulator, written EMULATOR here) or cannot, for
# tests/nixos_module.rs. Arguments: `lib` (nixpkgs-lib's lib/), `emulator` (a bool).
{ lib, emulator }:

let
  nixpkgsLib = import lib;
  function = import ../../nix/package.nix;
  stub = name: { inherit name; outPath = "/nonexistent/${name}"; };
  arguments = builtins.mapAttrs (name: _: stub name) (builtins.functionArgs function) // {
    lib = nixpkgsLib // { fileset = nixpkgsLib.fileset // { toSource = args: args; }; };
    rustPlatform.buildRustPackage = attrs: attrs;
    stdenv.hostPlatform = {
      emulatorAvailable = _: emulator;
      emulator = _: "EMULATOR";
    };
  };
in
(function arguments).postInstall
