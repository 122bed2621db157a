// The option parser shared with the fuzzer (tools/Shared).
global using Mblm.Tooling;
