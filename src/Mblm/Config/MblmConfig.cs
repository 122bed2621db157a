namespace Mblm.Config;

/// <summary>
/// Immutable MBLM model configuration with the reference's keys (<c>MBLMModelConfig</c>): stages are listed global → local.
/// Load one with <see cref="ConfigReader"/>; construct in code with <c>new MblmConfig { ... }</c> and call
/// <see cref="Validate"/>.
/// </summary>
public sealed record MblmConfig
{
    /// <summary>Vocabulary size V (<c>num_tokens</c>).</summary>
    public required int NumTokens { get; init; }
    /// <summary>Padding id (<c>pad_token_id</c>): patch-grid padding, ignored loss target, zero embedding row.</summary>
    public required int PadTokenId { get; init; }
    /// <summary>Model width per stage (<c>hidden_dims</c>).</summary>
    public required IReadOnlyList<int> HiddenDims { get; init; }
    /// <summary>Layers per stage (<c>num_layers</c>).</summary>
    public required IReadOnlyList<int> NumLayers { get; init; }
    /// <summary>Patch counts per stage (<c>seq_lens</c>); the maximum context is their product.</summary>
    public required IReadOnlyList<int> SeqLens { get; init; }
    /// <summary>Checkpoint chunk count for stages 2..n in training (<c>train_checkpoint_chunks</c>), or null.</summary>
    public IReadOnlyList<int>? TrainCheckpointChunks { get; init; }
    /// <summary>One block per stage (a single <c>block</c> in a file applies to every stage).</summary>
    public required IReadOnlyList<StageBlockConfig> Blocks { get; init; }

    /// <summary>Number of stages n.</summary>
    public int NumStages => HiddenDims.Count;

    /// <summary>Maximum context length Π seq_lens (bytes).</summary>
    public long MaxContext => SeqLens.Aggregate(1L, (a, p) => a * p);

    /// <summary>Bytes per top-level patch: P_2·…·P_n (inputs are right-padded to a multiple of this).</summary>
    public long PatchSize => SeqLens.Skip(1).Aggregate(1L, (a, p) => a * p);

    /// <summary>Largest vocabulary accepted (2^24).</summary>
    public const int MaxNumTokens = 1 << 24;
    /// <summary>Largest stage width accepted (2^20).</summary>
    public const int MaxHiddenDim = 1 << 20;
    /// <summary>Most layers per stage accepted.</summary>
    public const int MaxLayers = 4096;
    /// <summary>Most stages accepted.</summary>
    public const int MaxStages = 16;
    /// <summary>Largest context (Π seq_lens) accepted: 2^40 bytes.</summary>
    public const long MaxContextLimit = 1L << 40;

    /// <summary>Checks every rule; throws <see cref="ConfigException"/> naming the key and the rule.</summary>
    public MblmConfig Validate()
    {
        ConfigException.Require(NumTokens > 0, "num_tokens", "must be a positive integer");
        ConfigException.Require(PadTokenId >= 0 && PadTokenId < NumTokens, "pad_token_id", $"must be in [0, num_tokens) = [0, {NumTokens})");
        ConfigException.Require(HiddenDims is { Count: > 0 }, "hidden_dims", "must list at least one stage");
        int n = HiddenDims.Count;
        ConfigException.Require(NumLayers.Count == n, "num_layers", $"must have one entry per stage ({n}, as hidden_dims), got {NumLayers.Count}");
        ConfigException.Require(SeqLens.Count == n, "seq_lens", $"must have one entry per stage ({n}, as hidden_dims), got {SeqLens.Count}");
        ConfigException.Require(Blocks.Count == n, "block", $"must be one block or a list with one block per stage ({n}), got {Blocks.Count}");
        ConfigException.Require(NumTokens <= MaxNumTokens, "num_tokens", $"must be at most {MaxNumTokens:N0}");
        ConfigException.Require(n <= MaxStages, "hidden_dims", $"must list at most {MaxStages} stages");
        for (int i = 0; i < n; i++)
        {
            ConfigException.Require(HiddenDims[i] > 0, $"hidden_dims[{i}]", "must be a positive integer");
            ConfigException.Require(HiddenDims[i] <= MaxHiddenDim, $"hidden_dims[{i}]", $"must be at most {MaxHiddenDim:N0}");
            ConfigException.Require(NumLayers[i] >= 0, $"num_layers[{i}]", "must be a non-negative integer");
            ConfigException.Require(NumLayers[i] <= MaxLayers, $"num_layers[{i}]", $"must be at most {MaxLayers:N0}");
            ConfigException.Require(SeqLens[i] > 0, $"seq_lens[{i}]", "must be a positive integer");
            ConfigException.Require(Blocks[i] is not null, $"block[{i}]", "must be a block mapping");
            Blocks[i].Validate($"block[{i}]", HiddenDims[i]);
        }
        ConfigException.Require(SeqLens.Aggregate(1.0, (a, p) => a * p) <= MaxContextLimit, "seq_lens",
            $"give a context (their product) of more than {MaxContextLimit:N0} bytes");
        if (TrainCheckpointChunks is not null)
        {
            ConfigException.Require(TrainCheckpointChunks.Count == n - 1, "train_checkpoint_chunks",
                $"must have one entry per stage after the first ({n - 1}) or be null, got {TrainCheckpointChunks.Count}");
            for (int i = 0; i < TrainCheckpointChunks.Count; i++)
                ConfigException.Require(TrainCheckpointChunks[i] > 0, $"train_checkpoint_chunks[{i}]", "must be a positive integer");
        }
        return this;
    }

    /// <summary>
    /// Checks that every stage is causal, as a decoder (<c>MblmModel</c>: next-byte prediction, generation) needs; throws
    /// <see cref="ConfigException"/> naming the first non-causal block. Non-causal blocks (e.g. <c>transformerEncoder</c>)
    /// belong in an encoder.
    /// </summary>
    public MblmConfig RequireCausal()
    {
        for (int i = 0; i < Blocks.Count; i++)
            if (!Blocks[i].IsCausal)
                throw new ConfigException($"block[{i}].block_type",
                    $"'{Blocks[i].BlockType}' is a non-causal block: every stage of a decoder MBLM must be causal (it predicts the next byte); non-causal blocks belong in an encoder (MblmEncoder)");
        return this;
    }

    /// <summary>
    /// Parameter count of the model this config builds, computed from the shapes alone (no allocation); equals the
    /// number of elements of every parameter (buffers excluded).
    /// </summary>
    public long CountParameters()
    {
        try { return checked(CountParametersByPart().Values.Aggregate(0L, (a, b) => a + b)); }
        catch (OverflowException) { throw new ConfigException("hidden_dims", "give a model of more than 9.2e18 parameters"); }
    }

    /// <summary>
    /// Bytes the model's float32 parameters take (what building it allocates, before any activation or optimiser state),
    /// computed from the shapes.
    /// </summary>
    public long ParameterBytes()
    {
        try { return checked(CountParameters() * sizeof(float)); }
        catch (OverflowException) { throw new ConfigException("hidden_dims", "give a model of more than 8 EiB"); }
    }

    /// <summary>
    /// Throws <see cref="ConfigException"/> (key <c>(model)</c>) when the model's parameters would not fit
    /// <see cref="Limits.MemoryBudgetBytes"/>; called before a model is built from this config.
    /// </summary>
    public void RequireFitsMemory() =>
        Limits.RequireMemory(ParameterBytes(), () => $"a model of {CountParameters():N0} float32 parameters", m => new ConfigException("(model)", m));

    /// <summary>Parameter counts per part (start tokens, embeddings, each stage, projections, head).</summary>
    public IReadOnlyDictionary<string, long> CountParametersByPart()
    {
        try { return Parts(); }
        catch (OverflowException) { throw new ConfigException("hidden_dims", "give a model of more than 9.2e18 parameters"); }
    }

    private IReadOnlyDictionary<string, long> Parts()
    {
        checked
        {
            int n = NumStages;
            long v = NumTokens, dn = HiddenDims[n - 1];
            var parts = new Dictionary<string, long>
            {
                ["start_tokens"] = HiddenDims.Sum(d => (long)d),
                ["pos_embs"] = Enumerable.Range(0, n).Sum(i => Blocks[i].PosEmbType == PosEmbType.Fixed ? (long)SeqLens[i] * HiddenDims[i] : 0L),
                ["token_embs_rev"] = Enumerable.Range(0, n).Sum(i =>
                {
                    if (i == n - 1) return v * dn;
                    long unit = SeqLens.Skip(i + 1).Aggregate(1L, (a, p) => a * p) * dn; // Q_i·D_n
                    long di = HiddenDims[i];
                    return v * dn + 2 * unit + unit * di + di + 2 * di;               // Embedding, LN, Linear, LN
                }),
            };
            for (int i = 0; i < n; i++)
                parts[$"stage_models.{i}"] = Blocks[i].CountParameters(HiddenDims[i], NumLayers[i]);
            parts["to_next_stage_proj"] = Enumerable.Range(0, n - 1).Sum(i =>
                (long)HiddenDims[i] * SeqLens[i + 1] * HiddenDims[i + 1] + (long)SeqLens[i + 1] * HiddenDims[i + 1]);
            parts["to_logits"] = dn * v + v;
            return parts;
        }
    }
}
