// State-dict names are a file format.
//
// Every module in this folder registers its parameters, buffers and children explicitly with register_parameter /
// register_buffer / register_module, under the exact names the Python reference (mblm 0.4.0, which reuses
// MEGABYTE-pytorch's blocks and mamba-ssm's Mamba2) gives them, so that safetensors files and checkpoints move between
// the two unchanged: e.g. "stage_models.0.layers.1.0.to_kv.weight". Parameter-free positions of the reference's
// nn.Sequential containers (Rearrange, GELU, Dropout) are simply left unregistered, which keeps the indices of the
// others ("token_embs_rev.1.3.weight", "stage_models.0.layers.0.1.4.bias"). C# field names therefore don't matter;
// RegisterComponents() is never called. The full key list is documented in docs/state-dict.md and pinned by tests.
namespace Mblm.Model;
