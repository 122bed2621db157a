using Mblm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// Cached incremental decoding through the whole hierarchy. Each stage keeps the state of its current row (KV cache and
/// token-shift inputs for Transformer stages, conv window and SSM state for Mamba2 stages); a global stage advances once
/// per completed unit, and every new row starts from its start token with context projected from the stage above —
/// exactly the computation of the full forward, position by position. After <see cref="Start"/> and each
/// <see cref="Append"/>, <see cref="NextLogits"/> (B, V) is the distribution of the next byte, equal to the full forward's
/// last logits (the start logits for an empty prompt: the same start-token path as training). Stage inputs come from the
/// model's own step (<c>MblmModel.StageInput</c>/<c>StartInput</c>/<c>Context</c>), the one the full forward uses.
/// </summary>
public sealed class IncrementalDecoder : IDisposable
{
    private readonly MblmModel _model;
    private readonly MblmConfig _c;
    private readonly int _n;
    private readonly StageCache[] _caches;
    private readonly Tensor?[] _context;         // (B, P_s, D_s) context of each stage's current row (s ≥ 1)
    private readonly List<Tensor> _tail = [];    // (B) ids since the last completed top-level unit (the only ones read again)
    private readonly IDisposable _evalMode;
    private long _length;
    private Tensor? _next;

    /// <summary>Rows decoded in lockstep.</summary>
    public long Batch { get; private set; }

    /// <summary>Tokens consumed so far.</summary>
    public long Length => _length;

    /// <summary>Distribution logits (B, V) of the next token.</summary>
    public Tensor NextLogits => _next ?? throw new InvalidOperationException("call Start first");

    /// <summary>Creates a decoder for <paramref name="batch"/> rows (the model is put in eval mode).</summary>
    public IncrementalDecoder(MblmModel model, long batch)
    {
        _model = model;
        _c = model.Config;
        _n = _c.NumStages;
        Batch = batch;
        _evalMode = model.EvalMode(); // restored by Dispose
        _caches = Enumerable.Range(0, _n)
            .Select(s => model.Stage(s).NewCache(batch, s == 0 ? Math.Min(_c.SeqLens[0] + 1, 4096) : _c.SeqLens[s] + 1, model.Device)).ToArray();
        _context = new Tensor?[_n];
    }

    /// <summary>
    /// Consumes the prompt <paramref name="prompt"/> (B, L), L ≥ 0, and computes the next-token logits. All but the last
    /// prompt token are fed in parallel (one prefill per stage), the last one through <see cref="Append"/>.
    /// </summary>
    public void Start(Tensor prompt)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (prompt.dim() != 2 || prompt.size(0) != Batch) throw new ArgumentException($"prompt must have shape ({Batch}, L)", nameof(prompt));
        long length = prompt.size(1);
        if (length > _c.MaxContext && _c.Blocks[0].PosEmbType == PosEmbType.Fixed)
            throw new ArgumentException($"the prompt has {length} tokens; the model's maximum context is {_c.MaxContext} bytes (Π seq_lens)", nameof(prompt));
        _next?.Dispose();
        _next = null;
        foreach (var c in _caches) c.Reset();
        ClearTail();
        prompt = prompt.to(int64, _model.Device);
        long prefix = Math.Max(0, length - 1);
        _length = prefix;

        // Stage 0 row: start token + every complete top-level unit of the prefix, in one parallel pass.
        long fullUnits = prefix / _model.UnitBytes(0);
        var top = _model.StartInput(0, Batch);
        if (fullUnits > 0)
        {
            var units = prompt[.., ..(int)(fullUnits * _model.UnitBytes(0))].view(Batch, fullUnits, _model.UnitBytes(0));
            top = cat(new[] { top, _model.StageInput(0, units, 0, null) }, 1);
        }
        var h = _model.Stage(0).Prefill(top, _caches[0])[.., -1, ..];
        foreach (var t in prompt[.., (int)(fullUnits * _model.UnitBytes(0))..(int)prefix].unbind(1)) _tail.Add(t.clone().DetachFromDisposeScope());
        // Deeper stages: only their current rows, fed unit by unit (at most P_s − 1 units each).
        for (int s = 1; s < _n; s++)
        {
            h = StartRow(s, h);
            long done = prefix % _model.UnitBytes(s - 1) / _model.UnitBytes(s);
            long rowStart = prefix - prefix % _model.UnitBytes(s - 1);
            for (long j = 0; j < done; j++)
            {
                long from = rowStart + j * _model.UnitBytes(s);
                h = FeedUnit(s, prompt[.., (int)from..(int)(from + _model.UnitBytes(s))], j);
            }
        }
        SetNext(h);
        if (length > 0) Append(prompt[.., -1]);
    }

    /// <summary>Appends one token per row (<paramref name="ids"/> (B)) and computes the next-token logits.</summary>
    public void Append(Tensor ids)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        ids = ids.to(int64, _model.Device).reshape(Batch);
        long t = _length;
        if (t + 1 > _c.MaxContext && _c.Blocks[0].PosEmbType == PosEmbType.Fixed)
            throw new InvalidOperationException($"the context is full: the model's maximum context is {_c.MaxContext} bytes (Π seq_lens)");
        _tail.Add(ids.clone().DetachFromDisposeScope());
        _length = t + 1;

        // The local stage consumes the byte at position k+1 of its current row: its output predicts the next byte.
        long k = _n == 1 ? t : t % _c.SeqLens[_n - 1];
        var local = FeedUnit(_n - 1, ids.view(Batch, 1), k);
        var logits = local;

        // The coarsest global stage whose unit this byte completes advances by that unit; the finer stages' rows have
        // completed with it (their last outputs are unused), so they restart from their start tokens.
        int coarsest = -1;
        for (int s = 0; s < _n - 1; s++)
            if ((t + 1) % _model.UnitBytes(s) == 0) { coarsest = s; break; }
        if (coarsest >= 0)
        {
            long u = _model.UnitBytes(coarsest);
            long unitIndex = (t + 1) / u - 1;
            long j = coarsest == 0 ? unitIndex : unitIndex % _c.SeqLens[coarsest];
            var unitIds = stack(_tail.Skip(_tail.Count - (int)u).ToArray(), 1); // the unit lies inside the current top-level unit
            var h = FeedUnit(coarsest, unitIds, j);
            for (int s = coarsest + 1; s < _n; s++) h = StartRow(s, h);
        }
        if ((t + 1) % _model.UnitBytes(0) == 0) ClearTail();
        SetNext(logits);
    }

    /// <summary>
    /// Repeats every row <paramref name="times"/> times, caches included (the copies of row b become rows b·times …
    /// b·times+times−1): decode a shared prefix once, then continue each copy differently (e.g. score candidate answers).
    /// </summary>
    public void RepeatRows(long times)
    {
        if (times < 1) throw new ArgumentOutOfRangeException(nameof(times), times, "must be positive");
        if (times == 1) return;
        using var noGrad = no_grad();
        foreach (var c in _caches) c.RepeatRows(times);
        for (int s = 0; s < _n; s++)
            if (_context[s] is { } ctx) { _context[s] = ctx.repeat_interleave(times, 0).DetachFromDisposeScope(); ctx.Dispose(); }
        for (int i = 0; i < _tail.Count; i++) { var t = _tail[i]; _tail[i] = t.repeat_interleave(times, 0).DetachFromDisposeScope(); t.Dispose(); }
        if (_next is { } next) { _next = next.repeat_interleave(times, 0).DetachFromDisposeScope(); next.Dispose(); }
        Batch *= times;
    }

    // A new row of stage s: context from the parent's output (R, D_{s-1}), then the start token at position 0.
    private Tensor StartRow(int s, Tensor parentOutput)
    {
        _caches[s].Reset();
        _context[s]?.Dispose();
        _context[s] = _model.Context(s, parentOutput.unsqueeze(1)).view(Batch, _c.SeqLens[s], _c.HiddenDims[s]).DetachFromDisposeScope();
        return _model.Stage(s).Step(_model.StartInput(s, Batch).squeeze(1), _caches[s]);
    }

    // Unit j of stage s's current row (unitIds (B, U_s)): the model's stage input at position j, one step of the stage.
    private Tensor FeedUnit(int s, Tensor unitIds, long j)
    {
        var context = s > 0 ? _context[s]![.., (int)j..(int)(j + 1), ..] : null;
        var x = _model.StageInput(s, unitIds.unsqueeze(1), j, context).squeeze(1);
        return _model.Stage(s).Step(x, _caches[s]);
    }

    private void ClearTail()
    {
        foreach (var t in _tail) t.Dispose();
        _tail.Clear();
    }

    private void SetNext(Tensor localOutput)
    {
        _next?.Dispose();
        _next = _model.Head(localOutput).DetachFromDisposeScope();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var c in _caches) c.Dispose();
        foreach (var t in _context) t?.Dispose();
        ClearTail();
        _next?.Dispose();
        _evalMode.Dispose();
    }
}
