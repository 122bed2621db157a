using Mblm.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The Multiscale Byte Language Model (reference <c>MBLM</c>): an n-stage hierarchical decoder over byte ids.
/// <c>forward(ids (B, L))</c> returns logits <c>(B, L, V)</c> where position t predicts byte t+1; the prediction of byte 0
/// comes from the first local start position (<see cref="Logits"/> returns it too) and enters <see cref="Loss"/>.
/// State-dict names equal the reference's (see docs/state-dict.md).
/// </summary>
public sealed class MblmModel : nn.Module<Tensor, Tensor>
{
    private readonly StartTokens _startTokens;
    private readonly ModuleList<nn.Module> _posEmbs;
    private readonly ModuleList<nn.Module> _tokenEmbsRev;
    private readonly ModuleList<StageModel> _stages;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> _toNextStageProj;
    private readonly Linear _toLogits;
    private readonly long[] _unitBytes;   // U_s: bytes per unit of stage s
    private readonly bool _hasDropout;

    /// <summary>The (validated, immutable) configuration this model was built from.</summary>
    public MblmConfig Config { get; }

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Builds a freshly initialised model (PyTorch default initialisation; seed with <c>torch.manual_seed</c>).</summary>
    public MblmModel(MblmConfig config) : this(config, decoder: true) { }

    // decoder false: the hierarchy of an MblmEncoder, whose stages may be non-causal.
    internal MblmModel(MblmConfig config, bool decoder) : base("MBLM")
    {
        Config = decoder ? config.Validate().RequireCausal() : config.Validate();
        Config.RequireFitsMemory(); // before any allocation: a hostile config must not take the machine's memory
        int n = config.NumStages;
        var dims = config.HiddenDims;
        long v = config.NumTokens, dn = dims[n - 1];

        _startTokens = new StartTokens(dims);
        _posEmbs = new ModuleList<nn.Module>(Enumerable.Range(0, n).Select(i => config.Blocks[i].PosEmbType switch
        {
            PosEmbType.Fixed => (nn.Module)nn.Embedding(config.SeqLens[i], dims[i]),
            PosEmbType.Rope => new InterleavedRope(dims[i]),
            _ => new Placeholder(),
        }).ToArray());

        // Reverse order: index 0 is the local stage's plain byte embedding, index k (k ≥ 1) embeds units of stage n-1-k.
        var embs = new List<nn.Module> { nn.Embedding(v, dn, padding_idx: config.PadTokenId) };
        long unitBytes = 1;
        for (int stage = n - 2; stage >= 0; stage--)
        {
            unitBytes *= config.SeqLens[stage + 1];
            embs.Add(new PatchEmbedder(v, dn, unitBytes, dims[stage], config.PadTokenId));
        }
        _tokenEmbsRev = new ModuleList<nn.Module>(embs.ToArray());

        _stages = new ModuleList<StageModel>(Enumerable.Range(0, n)
            .Select(i => config.Blocks[i].CreateStage(dims[i], config.NumLayers[i])).ToArray());
        _toNextStageProj = new ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, n)
            .Select(i => i < n - 1 ? (nn.Module<Tensor, Tensor>)new NextStageProjection(dims[i], config.SeqLens[i + 1], dims[i + 1]) : new Placeholder())
            .ToArray());
        _toLogits = nn.Linear(dn, v);
        _unitBytes = Enumerable.Range(0, n).Select(s => config.SeqLens.Skip(s + 1).Aggregate(1L, (a, p) => a * p)).ToArray();
        _hasDropout = config.Blocks.Any(b => b.HasDropout);

        register_module("start_tokens", _startTokens);
        register_module("pos_embs", _posEmbs);
        register_module("token_embs_rev", _tokenEmbsRev);
        register_module("stage_models", _stages);
        register_module("to_next_stage_proj", _toNextStageProj);
        register_module("to_logits", _toLogits);
    }

    /// <summary>The device the parameters live on.</summary>
    public Device Device => _toLogits.weight!.device;

    /// <summary>
    /// Puts the model in evaluation mode until the returned scope is disposed, then restores the mode it had:
    /// <c>using (model.EvalMode()) { … }</c>.
    /// </summary>
    public IDisposable EvalMode()
    {
        bool wasTraining = training;
        eval();
        return new ModeScope(this, wasTraining);
    }

    private sealed class ModeScope(MblmModel model, bool training) : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { model.train(training); _done = true; } }
    }

    /// <summary>A cached incremental decoder over this model for <paramref name="batch"/> rows (see <see cref="IncrementalDecoder"/>).</summary>
    public IncrementalDecoder NewDecoder(long batch) => new(this, batch);


    /// <summary>Logits <c>(B, L, V)</c>; position t is the distribution of byte t+1.</summary>
    public override Tensor forward(Tensor ids)
    {
        var (logits, start) = Logits(ids);
        start.Dispose();
        return logits;
    }

    /// <summary>Logits <c>(B, L, V)</c> and the start logits <c>(B, V)</c> (the prediction of byte 0).</summary>
    public (Tensor Logits, Tensor StartLogits) Logits(Tensor ids) => LogitsOf(CheckIds(ids, nameof(ids)));

    // Logits of ids already checked by CheckIds.
    private (Tensor Logits, Tensor StartLogits) LogitsOf(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var (hidden, start) = HiddenStatesOf(ids);
        if (StepProfile.Active) StepProfile.Prefix = "";
        hidden = StepProfile.Mark(hidden, "head");
        return (_toLogits.forward(hidden).MoveToOuterDisposeScope(), _toLogits.forward(start).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The last stage's final hidden states <c>(B, L, D_n)</c> (reference <c>HIDDEN_STATE</c>) and those of the first
    /// local start position <c>(B, D_n)</c>.
    /// </summary>
    public (Tensor Hidden, Tensor StartHidden) HiddenStates(Tensor ids) => HiddenStatesOf(CheckIds(ids, nameof(ids)));

    /// <summary>Width of <see cref="PooledFeatures"/>: D_0 + 2·D_n.</summary>
    public long PooledWidth => Config.HiddenDims[0] + 2L * Config.HiddenDims[^1];

    /// <summary>
    /// One vector per sequence for classification heads <c>(B, D_0 + 2·D_n)</c>: the global stage's output after the last
    /// patch that holds one of the sequence's bytes (it has read the whole sequence), then the mean and the maximum of the
    /// last stage's final hidden states over the sequence's bytes. <paramref name="lengths"/> (B) gives each row's byte
    /// count (1 ≤ length ≤ L); a row padded with the pad id up to the batch's length gives the same vector as the row alone.
    /// Needs at least two stages.
    /// </summary>
    public Tensor PooledFeatures(Tensor ids, Tensor lengths) => Pool(ids, lengths, null, null, withLoss: false).Pooled;

    // The same with the lengths on the host (the trainer and the scorer build them there): checked there, without a device
    // round trip per batch. With starts: row b's bytes lie at [starts[b], starts[b] + lengths[b]); what comes before them
    // (filler that shifts the row's patch phase) is read by the model but left out of the pooled features.
    internal Tensor PooledFeaturesOf(Tensor ids, long[] lengths, long[]? starts = null) => Pool(ids, null, lengths, null, withLoss: false, starts).Pooled;

    internal (Tensor Pooled, Tensor Loss) PooledFeaturesAndLossOf(Tensor ids, long[] lengths, Tensor? lossMask, long[]? starts = null)
    {
        var (pooled, loss) = Pool(ids, null, lengths, lossMask, withLoss: true, starts);
        return (pooled, loss!);
    }

    /// <summary>
    /// <see cref="PooledFeatures"/> and the next-byte <see cref="Loss"/> of the same ids (loss mask as there) from one
    /// forward pass: what a classifier trained with an auxiliary language-modelling term needs.
    /// </summary>
    public (Tensor Pooled, Tensor Loss) PooledFeaturesAndLoss(Tensor ids, Tensor lengths, Tensor? lossMask = null)
    {
        var (pooled, loss) = Pool(ids, lengths, null, lossMask, withLoss: true);
        return (pooled, loss!);
    }

    // Exactly one of lengths (a tensor) and hostLengths is given.
    private (Tensor Pooled, Tensor? Loss) Pool(Tensor ids, Tensor? lengths, long[]? hostLengths, Tensor? lossMask, bool withLoss, long[]? starts = null)
    {
        ids = CheckIds(ids, nameof(ids));
        using var scope = NewDisposeScope();
        long batch = ids.size(0), length = ids.size(1);
        long[] shape = lengths?.shape ?? [hostLengths!.Length];
        if (shape.Length != 1 || shape[0] != batch) throw new ArgumentException($"lengths must have shape ({batch}), got [{string.Join(", ", shape)}]", nameof(lengths));
        long[] bounds;
        if (hostLengths is not null) bounds = batch == 0 ? [1, 1] : [hostLengths.Min(), hostLengths.Max()];
        else
        {
            var n64 = lengths!.to(int64);
            bounds = stack(new[] { n64.min(), n64.max() }).cpu().data<long>().ToArray();
        }
        if (bounds[0] < 1 || bounds[1] > length) throw new ArgumentOutOfRangeException(nameof(lengths), $"lengths must lie in [1, {length}], found [{bounds[0]}, {bounds[1]}]");
        if (starts is not null && (starts.Length != batch || starts.Where((s, b) => s < 0 || s + hostLengths![b] > length).Any()))
            throw new ArgumentOutOfRangeException(nameof(starts), $"each row's start plus its length must lie within the {length} ids");
        var n = hostLengths is null ? lengths!.to(int64, Device) : tensor(hostLengths).to(Device);
        var from = starts is null ? zeros(batch, int64, Device) : tensor(starts).to(Device);
        if (Config.NumStages < 2) throw new NotSupportedException("pooled features need at least two stages (a global and a local one)");
        var (local, startHidden, global) = HiddenStatesOf(ids, keepGlobal: true);  // (B, L, D_n), (B, D_n), (B, 1+K, D_0)
        var positions = arange(length, device: Device).unsqueeze(0);
        var valid = positions.ge(from.unsqueeze(1)).logical_and(positions.lt(from.add(n).unsqueeze(1))).unsqueeze(-1);  // (B, L, 1)
        var mean = local.mul(valid).sum(1).div(n.unsqueeze(1).to(local.dtype));
        var max = local.masked_fill(valid.logical_not(), double.NegativeInfinity).amax(1);
        // Output j of stage 0 has read patches 0..j-1: the last patch with a byte of the row is ceil((start + n) / Q) - 1.
        var last = from.add(n).add(Config.PatchSize - 1).floor_divide(Config.PatchSize);
        var g = global!.gather(1, last.view(batch, 1, 1).expand(batch, 1, global.size(2))).squeeze(1);
        var pooled = cat(new[] { g, mean, max }, 1).MoveToOuterDisposeScope();
        if (!withLoss) return (pooled, null);
        var ce = TokenLosses(_toLogits.forward(local), _toLogits.forward(startHidden), ids, Config.PadTokenId);
        var loss = ReduceLoss(ce, lossMask is null ? null : CheckMask(lossMask, ids));
        return (pooled, loss.MoveToOuterDisposeScope());
    }

    // Hidden states of ids already checked by CheckIds.
    private (Tensor Hidden, Tensor StartHidden) HiddenStatesOf(Tensor ids)
    {
        var (hidden, start, _) = HiddenStatesOf(ids, keepGlobal: false);
        return (hidden, start);
    }

    // Hidden states of checked ids, and with keepGlobal stage 0's outputs (B, 1+K, D_0).
    private (Tensor Hidden, Tensor StartHidden, Tensor? Global) HiddenStatesOf(Tensor ids, bool keepGlobal)
    {
        using var scope = NewDisposeScope();
        long batch = ids.size(0), length = ids.size(1);
        Tensor? global = null;
        var h = RunStage(Config.NumStages - 1, LocalStageInput(ids, keepGlobal ? g => global = g : null)); // (R, 1+S, D_n), R = B·K·P_2…P_{n-1}
        long s1 = h.size(1), dn = h.size(2);
        var grid = h.view(batch, -1, s1, dn);                      // (B, rows per sample, 1+S, D_n)
        var start = grid[.., 0, 0, ..];                            // start position of the first local row
        var body = grid[.., .., 1.., ..].reshape(batch, -1, dn);   // drop every local start position: (B, K·Q, D_n)
        body = body[.., ..(int)length, ..];                        // truncate the patch padding
        return (body.MoveToOuterDisposeScope(), start.MoveToOuterDisposeScope(), global?.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The reference's loss: <c>preds[:, t]</c> predicts <c>ids[:, t]</c> (t = 0 from the start logits), pad targets are
    /// ignored, terms are multiplied by <paramref name="lossMask"/> (same shape as ids) and
    /// <c>loss = Σ ce / count(ce ≠ 0)</c>; 0 when every term is masked.
    /// </summary>
    public Tensor Loss(Tensor ids, Tensor? lossMask = null)
    {
        if (Config.NumStages > 1 && CheckpointChunksNow is { } chunks)
            return FoldedLoss(ids, lossMask, chunks);
        return LossAndLogits(ids, lossMask).Loss;
    }

    /// <summary>The loss together with the logits <c>(B, L, V)</c> and start logits <c>(B, V)</c>.</summary>
    public (Tensor Loss, Tensor Logits, Tensor StartLogits) LossAndLogits(Tensor ids, Tensor? lossMask = null)
    {
        using var scope = NewDisposeScope();
        ids = CheckIds(ids, nameof(ids));
        var (logits, start) = LogitsOf(ids);
        var ce = TokenLosses(StepProfile.Mark(logits, "loss"), start, ids, Config.PadTokenId);
        var loss = ReduceLoss(ce, lossMask is null ? null : CheckMask(lossMask, ids));
        return (loss.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope(), start.MoveToOuterDisposeScope());
    }

    /// <summary>Per-position cross-entropy <c>(B, L)</c> in nats; pad targets give 0.</summary>
    public static Tensor TokenLosses(Tensor logits, Tensor startLogits, Tensor ids, long padId)
    {
        using var scope = NewDisposeScope();
        long batch = ids.size(0), length = ids.size(1), v = logits.size(-1);
        var first = nn.functional.cross_entropy(startLogits, ids[.., 0], ignore_index: padId, reduction: nn.Reduction.None);
        var ce = first.unsqueeze(1);
        if (length > 1)
        {
            var rest = nn.functional.cross_entropy(logits[.., ..^1, ..].reshape(-1, v), ids[.., 1..].reshape(-1),
                ignore_index: padId, reduction: nn.Reduction.None).view(batch, length - 1);
            ce = cat(new[] { ce, rest }, 1);
        }
        return ce.MoveToOuterDisposeScope();
    }

    /// <summary><c>Σ (ce·mask) / count(ce·mask ≠ 0)</c>, or 0 when no term counts (no host synchronisation).</summary>
    public static Tensor ReduceLoss(Tensor ce, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var weighted = mask is null ? ce : ce * mask;
        var count = weighted.ne(0).sum().to_type(weighted.dtype).clamp_min(1);
        return (weighted.sum() / count).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Training loss with checkpointing through the whole hierarchy, computed piece-wise (<see cref="PiecewiseCheckpoint"/>):
    /// stage 0's patch embedder runs over pieces of units and keeps only the ids; each stage s ≥ 1 keeps one parent output
    /// vector per row and, per piece of rows, builds its input (context projection, patch or byte embedding, positions,
    /// start), runs the stage and — on the local stage — the LM head and cross-entropy, so that neither the byte-level
    /// embeddings, nor the contexts, nor the (B·L, V) logits ever exist at once; backward recomputes one piece at a time.
    /// Stage 0 itself runs plainly (reference semantics). Pieces follow the configured chunks (torch.chunk sizes) and are
    /// cut further to at most <see cref="PieceBytes"/> bytes each. Equal to <see cref="LossAndLogits"/>'s loss; used by
    /// <see cref="Loss"/> in training mode with checkpoint chunks.
    /// </summary>
    private Tensor FoldedLoss(Tensor ids, Tensor? lossMask, IReadOnlyList<int> chunks)
    {
        using var scope = NewDisposeScope();
        ids = CheckIds(ids, nameof(ids));
        var mask = lossMask is null ? null : CheckMask(lossMask, ids);
        int n = Config.NumStages;
        long batch = ids.size(0), length = ids.size(1), pad = Config.PadTokenId;
        var padded = PadToGrid(ids);                                        // (B, K·Q)
        long k = padded.size(1) / Config.PatchSize;
        MemoryProbe.At("ids padded", padded);

        // Stage 0: patch embeddings of pieces of units (only the ids are kept), start, then the stage (plain autograd).
        var units0 = padded.view(batch, k, _unitBytes[0]);
        var e0 = PiecewiseCheckpoint.Run((_, c, offset) => StageInput(0, c[0], offset, null), null, 1,
            Math.Max(1, PieceBytes / _unitBytes[0]), randomized: false, units0);
        var x0 = cat(new[] { StartInput(0, batch), e0 }, 1);
        e0.Dispose();
        MemoryProbe.At("stage 0 input", x0);
        var h = _stages[0].forward(x0);
        x0.Dispose();
        MemoryProbe.At("stage 0 forward", h);

        Tensor? targets = null;
        for (int s = 1; ; s++)
        {
            // One parent output per row of stage s: row r·S + j of stage s hangs under output j of parent row r.
            var parent = h[.., ..^1, ..].reshape(-1, h.size(2));             // (R_s, D_{s-1})
            h.Dispose();
            long rows = parent.size(0), units = Config.SeqLens[s];
            var stageUnits = padded.view(rows, units, _unitBytes[s]);        // (R_s, P_s, U_s)
            bool last = s == n - 1;
            if (last) targets = AlignToLocalOutputs(ids, length, batch, pad);
            long piece = Math.Min((rows + chunks[s - 1] - 1) / chunks[s - 1], Math.Max(1, PieceBytes / (units * _unitBytes[s])));
            int stage = s;
            var constants = last ? new[] { stageUnits, targets! } : new[] { stageUnits };
            h = PiecewiseCheckpoint.Run((p, c, _) => StagePiece(stage, p!, c[0], last ? c[1] : null), parent, 0, piece, _hasDropout, constants);
            parent.Dispose();
            MemoryProbe.At(last ? $"stage {s} + loss forward" : $"stage {s} forward", h);
            if (last) break;
        }
        var weights = mask is null ? null : AlignToLocalOutputs(mask, length, batch, 0);
        return ReduceLoss(h, weights).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The largest number of bytes one piece of the folded training loss covers (see <see cref="FoldedLoss"/>): bounds the
    /// memory of a recomputation (about 15 KB per byte for the M3 model's local stage with its head) without making the
    /// pieces small enough for per-call overhead to matter.
    /// </summary>
    internal static long PieceBytes { get; set; } = 1 << 15;

    // Rows of stage s (p: parent outputs (r, D_{s-1}), units (r, P_s, U_s)) → outputs (r, 1+P_s, D_s), or on the local
    // stage with targets (r, 1+P_n) the per-position cross-entropy (r, 1+P_n).
    private Tensor StagePiece(int s, Tensor parent, Tensor units, Tensor? targets)
    {
        using var scope = NewDisposeScope();
        var context = Context(s, parent.unsqueeze(1));                       // (r, P_s, D_s)
        var x = StageRows(s, units, context);
        context.Dispose();
        var h = _stages[s].forward(x);
        x.Dispose();
        if (targets is null) return h.MoveToOuterDisposeScope();
        var logits = _toLogits.forward(h);
        h.Dispose();
        return nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index: Config.PadTokenId,
            reduction: nn.Reduction.None).view(targets.size(0), targets.size(1)).MoveToOuterDisposeScope();
    }

    // Per-byte values (B, L) laid out like the local outputs (R, 1+P): position k+1 of row r predicts byte r·P + k + 1;
    // position 0 of a sample's first row predicts byte 0; other start positions and bytes beyond L get the filler (the pad
    // id for targets, weight 0 for the loss mask).
    private Tensor AlignToLocalOutputs(Tensor perByte, long length, long batch, double filler)
    {
        using var scope = NewDisposeScope();
        long p = Config.SeqLens[^1], perSample = (length + Config.PatchSize - 1) / Config.PatchSize * (Config.PatchSize / p);
        long padded = perSample * p, rows = batch * perSample;
        var flat = nn.functional.pad(perByte, new long[] { 0, padded + 1 - length }, value: filler);     // (B, K·Q + 1)
        var first = full(new[] { batch, perSample, 1L }, filler, dtype: perByte.dtype, device: perByte.device);
        first[.., 0, 0] = perByte[.., 0];
        return cat(new[] { first, flat[.., 1..].reshape(batch, perSample, p) }, -1).reshape(rows, p + 1).MoveToOuterDisposeScope();
    }

    // ids (B, L) padded with the pad id to the patch grid (B, K·Q); ids itself (contiguous) when no padding is needed.
    private Tensor PadToGrid(Tensor ids)
    {
        long length = ids.size(1), q = Config.PatchSize;
        long pad = (q - length % q) % q;
        var padded = pad > 0 ? nn.functional.pad(ids, new long[] { 0, pad }, value: Config.PadTokenId) : ids.contiguous();
        long k = padded.size(1) / q;
        if (Config.Blocks[0].PosEmbType == PosEmbType.Fixed && k > Config.SeqLens[0])
            throw new ArgumentException(
                $"input of {length} bytes needs {k} top-level patches but seq_lens[0] is {Config.SeqLens[0]} and stage 0 uses a fixed " +
                $"positional embedding: at most {Config.MaxContext} bytes fit", nameof(ids));
        return padded;
    }

    // ---- the hierarchy: one step builds every stage's input, for the full forward, the folded loss and the decoder ----

    /// <summary>Bytes per unit of stage <paramref name="stage"/>: U_s = P_{s+1}·…·P_n (1 for the local stage).</summary>
    internal long UnitBytes(int stage) => _unitBytes[stage];

    /// <summary>The sequence model of stage <paramref name="stage"/>.</summary>
    internal StageModel Stage(int stage) => _stages[stage];

    /// <summary>
    /// Stage <paramref name="stage"/>'s input at its row positions firstPosition, firstPosition+1, … (without the start
    /// position): the embedding of <paramref name="units"/> (R, S, U_s), plus positions, plus <paramref name="context"/>
    /// (R, S, D_s) from the stage above (null for stage 0). Result (R, S, D_s).
    /// </summary>
    internal Tensor StageInput(int stage, Tensor units, long firstPosition, Tensor? context)
    {
        using var scope = NewDisposeScope();
        var embedding = (nn.Module<Tensor, Tensor>)_tokenEmbsRev[Config.NumStages - 1 - stage];
        var e = stage == Config.NumStages - 1 ? embedding.forward(units.squeeze(-1)) : embedding.forward(units);
        e = AddPositions(stage, e, firstPosition);
        if (context is not null) e = e.add_(context); // in place: nothing here is saved for backward
        return e.MoveToOuterDisposeScope();
    }

    /// <summary>The start vector of stage <paramref name="stage"/> for <paramref name="rows"/> rows: (rows, 1, D_s), a view.</summary>
    internal Tensor StartInput(int stage, long rows)
    {
        var start = _startTokens[stage];
        return start.view(1, 1, -1).expand(rows, 1, start.size(0));
    }

    /// <summary>
    /// Context for stage <paramref name="stage"/> (≥ 1) from stage s-1's outputs (R, S, D_{s-1}): (R·S, P_s, D_s), row
    /// r·S + j feeding every position of the child row under unit j of parent row r.
    /// </summary>
    internal Tensor Context(int stage, Tensor parentOutputs) => _toNextStageProj[stage - 1].forward(parentOutputs);

    /// <summary>The LM head: hidden states (…, D_n) → logits (…, V).</summary>
    internal Tensor Head(Tensor hidden) => _toLogits.forward(hidden);

    // A whole row of stage s: [start ; StageInput(units from position 0, context)] → (R, 1+S, D_s); the start gets no context.
    private Tensor StageRows(int stage, Tensor units, Tensor? context)
    {
        using var scope = NewDisposeScope();
        var e = StageInput(stage, units, 0, context);
        return cat(new[] { StartInput(stage, e.size(0)), e }, 1).MoveToOuterDisposeScope();
    }

    // Pads ids to the patch grid, runs stages 0..n-2 coarse → fine and returns the local stage's input (R, 1+P_n, D_n).
    // Stage s sees the padded ids as rows of S_s units of U_s bytes (S_0 = K top-level patches, S_s = P_s after that).
    // Byte-level temporaries are released as soon as they are consumed (a dispose scope per stage), which keeps the
    // forward's peak memory near what autograd saves.
    private Tensor LocalStageInput(Tensor ids, Action<Tensor>? onGlobal = null)
    {
        int n = Config.NumStages;
        using var padded = PadToGrid(ids);
        long k = padded.size(1) / Config.PatchSize;
        Tensor? context = null;   // (R_s, S_s, D_s) from the stage above
        for (int s = 0; ; s++)
        {
            using var scope = NewDisposeScope();
            var units = padded.view(-1, s == 0 ? k : Config.SeqLens[s], _unitBytes[s]);
            if (StepProfile.Active)
            {
                StepProfile.Prefix = $"s{s}.";
                if (context is null) StepProfile.Begin("input"); else context = StepProfile.Mark(context, "input");
            }
            var x = StageRows(s, units, context);
            context?.Dispose(); // autograd keeps what backward needs; the handle itself can go now
            if (s == n - 1) return x.MoveToOuterDisposeScope();
            var h = RunStage(s, x);
            if (s == 0 && onGlobal is not null) onGlobal(h.MoveToOuterDisposeScope());
            context = Context(s + 1, StepProfile.Mark(h[.., ..^1, ..], "next-stage-proj")).MoveToOuterDisposeScope(); // the last output feeds no unit
        }
    }

    // In training mode with checkpoint chunks, stage s ≥ 1 runs as torch.chunk(x, c) pieces (chunk size ceil(R/c), possibly
    // fewer chunks), each checkpointed; in eval mode, or with grad disabled, the stage runs whole. Stage 0 is never
    // checkpointed (reference semantics).
    private Tensor RunStage(int s, Tensor x)
    {
        var stage = _stages[s];
        if (s == 0 || CheckpointChunksNow is not { } chunks) return stage.forward(x);
        long rows = x.size(0), pieceRows = (rows + chunks[s - 1] - 1) / chunks[s - 1]; // torch.chunk's chunk size
        if (rows == 0) return stage.forward(x);
        return PiecewiseCheckpoint.Run((piece, _, _) => stage.forward(piece!), x, 0, pieceRows, _hasDropout);
    }

    // The config's checkpoint chunks when they apply now (training mode with gradients), else null.
    private IReadOnlyList<int>? CheckpointChunksNow => training && is_grad_enabled() ? Config.TrainCheckpointChunks : null;

    /// <summary>
    /// Adds stage <paramref name="stage"/>'s positional embedding to <paramref name="e"/> (…, S, D) whose second-to-last
    /// axis holds row positions <paramref name="firstPosition"/>, firstPosition+1, ….
    /// </summary>
    private Tensor AddPositions(int stage, Tensor e, long firstPosition)
    {
        switch (_posEmbs[stage])
        {
            case Embedding fixedPos:
                if (firstPosition + e.size(-2) > fixedPos.weight!.size(0))
                    throw new ArgumentException($"stage {stage} has {fixedPos.weight!.size(0)} fixed positions; position {firstPosition + e.size(-2) - 1} is beyond them");
                using (var positions = arange(firstPosition, firstPosition + e.size(-2), dtype: int64, device: e.device))
                    return e + fixedPos.forward(positions);
            case InterleavedRope rope:
                return rope.forward(e, firstPosition);
            default:
                return e;
        }
    }

    private Tensor CheckIds(Tensor ids, string name)
    {
        if (ids.dim() != 2) throw new ArgumentException($"{name} must have shape (batch, length), got [{string.Join(", ", ids.shape)}]", name);
        if (ids.size(1) == 0) throw new ArgumentException($"{name} must hold at least one id per row (length 0); generation from nothing uses the start-token path", name);
        if (ids.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte)) throw new ArgumentException($"{name} must be an integer " +
            $"tensor, got {ids.dtype}", name);
        // One host synchronisation for both bounds.
        var bounds = stack(new[] { ids.min().to_type(int64), ids.max().to_type(int64) }).cpu().data<long>().ToArray();
        long min = bounds[0], max = bounds[1];
        if (min < 0 || max >= Config.NumTokens)
            throw new ArgumentOutOfRangeException(name, $"{name} must lie in [0, num_tokens) = [0, {Config.NumTokens}), found values in [{min}, {max}]");
        return ids.to(int64, Device);
    }

    private Tensor CheckMask(Tensor mask, Tensor ids)
    {
        if (!mask.shape.SequenceEqual(ids.shape))
            throw new ArgumentException($"loss mask must have the shape of the ids [{string.Join(", ", ids.shape)}], got [{string.Join(", ", mask.shape)}]", "lossMask");
        return mask.to(float32, Device);
    }
}
