using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>How a Mamba2 layer evaluates its state-space scan; all give the same function.</summary>
public enum Mamba2ScanMode
{
    /// <summary>The chunked SSD matrix form (training and scoring; matmul-bound).</summary>
    Chunked,
    /// <summary>The plain per-step recurrence (the test oracle).</summary>
    Sequential,
}

/// <summary>
/// The Mamba2 selective state-space scan with one group (B and C shared by all heads):
/// per head h, <c>S_t = exp(Δ_t·A_h)·S_{t-1} + Δ_t·x_t ⊗ B_t</c> (S is headdim × N, S_0 = 0) and <c>y_t = S_t·C_t</c>
/// (the D skip is added by the caller). Shapes: x (b, l, h, p), dt = Δ (b, l, h), A (h), B and C (b, l, n) → y (b, l, h, p).
/// </summary>
internal static class Mamba2Scan
{
    /// <summary>Evaluates the scan with the chosen method.</summary>
    public static Tensor Run(Mamba2ScanMode mode, Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c, int chunkSize) =>
        mode == Mamba2ScanMode.Sequential ? Sequential(x, dt, a, b, c) : Chunked(x, dt, a, b, c, chunkSize);

    /// <summary>The per-step recurrence, one time step at a time (inputs unbound once: see environment.md §4).</summary>
    public static Tensor Sequential(Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c)
    {
        using var scope = NewDisposeScope();
        long batch = x.size(0), heads = x.size(2), p = x.size(3), n = b.size(2);
        var decay = (dt * a).exp().unbind(1);                       // l × (b, h)
        var input = (x * dt.unsqueeze(-1)).unbind(1);               // l × (b, h, p)
        var bs = b.unbind(1);                                       // l × (b, n)
        var cs = c.unbind(1);
        var state = zeros(new[] { batch, heads, p, n }, x.dtype, x.device);
        var ys = new Tensor[decay.Length];
        for (int t = 0; t < decay.Length; t++)
        {
            state = state * decay[t].view(batch, heads, 1, 1) + input[t].unsqueeze(-1) * bs[t].view(batch, 1, 1, n);
            ys[t] = matmul(state, cs[t].view(batch, 1, n, 1)).squeeze(-1); // (b, h, p)
        }
        return stack(ys, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The chunked SSD form: within chunks of <paramref name="chunkSize"/> steps the scan is a masked matrix product with
    /// decays <c>exp(segsum(Δ·A))</c>; chunk-final states are carried across chunks by one small matrix product.
    /// </summary>
    public static Tensor Chunked(Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c, int chunkSize)
    {
        using var scope = NewDisposeScope();
        long batch = x.size(0), length = x.size(1), heads = x.size(2), p = x.size(3), n = b.size(2);
        long k = Math.Min(chunkSize, length);
        long pad = (k - length % k) % k;
        if (pad > 0)
        {
            // Zero Δ at the padded tail: no decay and no input, so earlier outputs are untouched.
            x = nn.functional.pad(x, new long[] { 0, 0, 0, 0, 0, pad });
            dt = nn.functional.pad(dt, new long[] { 0, 0, 0, pad });
            b = nn.functional.pad(b, new long[] { 0, 0, 0, pad });
            c = nn.functional.pad(c, new long[] { 0, 0, 0, pad });
        }
        long chunks = (length + pad) / k;

        var xd = (x * dt.unsqueeze(-1)).view(batch, chunks, k, heads, p).permute(0, 1, 3, 2, 4); // (b, c, h, K, p)
        var logDecay = (dt * a).view(batch, chunks, k, heads).permute(0, 1, 3, 2);               // (b, c, h, K)
        var bc = b.view(batch, chunks, k, n);                                                    // (b, c, K, n)
        var cc = c.view(batch, chunks, k, n);
        var cum = logDecay.cumsum(-1);                                                           // (b, c, h, K)

        // 1. Within each chunk: y_i = Σ_{j ≤ i} (C_i·B_j) · exp(cum_i − cum_j) · Δ_j x_j.
        // Decay matrix exp(a_{j+1} + … + a_i) for i ≥ j, 0 above the diagonal. Summed segment by segment rather than as
        // cum_i − cum_j: with strong decay the cumulative sums grow large and their difference would lose precision.
        var decayMatrix = SegSum(logDecay).exp();                                                // (b, c, h, K, K)
        var cb = matmul(cc, bc.transpose(-1, -2)).unsqueeze(2);                                  // (b, c, 1, K, K)
        var yDiag = matmul(cb * decayMatrix, xd);                                                // (b, c, h, K, p)

        // 2. Each chunk's final state from its own inputs: Σ_j exp(cum_last − cum_j) · Δ_j x_j ⊗ B_j.
        // Σ_{k > j} a_k summed from the chunk's end, so the terms that matter (j near the end) are exact.
        var toEnd = (logDecay.flip(-1).cumsum(-1).flip(-1) - logDecay).exp().unsqueeze(-1);      // (b, c, h, K, 1)
        var states = matmul((xd * toEnd).transpose(-1, -2), bc.unsqueeze(2));                    // (b, c, h, p, n)

        // 3. Carry states across chunks: the state entering chunk z is Σ_{y < z} exp(decay of chunks y+1..z−1) · states_y.
        var chunkTotals = cum.select(-1, -1);                                                    // (b, c, h)
        Tensor entering = chunks <= MatrixCarryMaxChunks
            ? CarryByMatrix(states, chunkTotals)
            : CarryByLoop(states, chunkTotals);                                                  // (b, c, h, p, n)

        // 4. Contribution of the entering state: exp(cum_i) · C_i · S_enter.
        var yOff = matmul(cc.unsqueeze(2), entering.transpose(-1, -2)) * cum.exp().unsqueeze(-1); // (b, c, h, K, p)

        var y = (yDiag + yOff).permute(0, 1, 3, 2, 4).reshape(batch, chunks * k, heads, p);
        return y[.., ..(int)length, .., ..].MoveToOuterDisposeScope();
    }

    /// <summary>Up to this many chunks the inter-chunk carry is one (c+1)² matrix product; beyond, a loop over chunks.</summary>
    public const int MatrixCarryMaxChunks = 64;

    // All chunk carries at once: exp(segsum) over chunk totals, one matrix product (O(c²), best for few chunks).
    private static Tensor CarryByMatrix(Tensor states, Tensor chunkTotals)
    {
        long batch = states.size(0), chunks = states.size(1), heads = states.size(2), p = states.size(3), n = states.size(4);
        var padded = nn.functional.pad(chunkTotals.permute(0, 2, 1), new long[] { 1, 0 });     // (b, h, c+1)
        var carry = SegSum(padded).exp();                                                       // (b, h, c+1, c+1)
        var withStart = cat(new[] { zeros(new[] { batch, 1, heads, p, n }, states.dtype, states.device), states }, 1)
            .permute(0, 2, 1, 3, 4).reshape(batch, heads, chunks + 1, p * n);                   // (b, h, c+1, p·n)
        return matmul(carry, withStart)[.., .., ..(int)chunks, ..]
            .view(batch, heads, chunks, p, n).permute(0, 2, 1, 3, 4);                            // (b, c, h, p, n)
    }

    // One chunk at a time: S_enter(z+1) = exp(total_z) · S_enter(z) + states_z (O(c), for long sequences).
    private static Tensor CarryByLoop(Tensor states, Tensor chunkTotals)
    {
        long batch = states.size(0), heads = states.size(2);
        var perChunk = states.unbind(1);
        var decays = chunkTotals.exp().unbind(1);                                               // c × (b, h)
        var entering = new Tensor[perChunk.Length];
        var current = zeros_like(perChunk[0]);
        for (int z = 0; z < perChunk.Length; z++)
        {
            entering[z] = current;
            current = current * decays[z].view(batch, heads, 1, 1) + perChunk[z];
        }
        return stack(entering, 1);
    }

    /// <summary>
    /// Stable segment sums: for x (…, T) returns (…, T, T) with <c>[i, j] = x[j+1] + … + x[i]</c> for i ≥ j and −∞ above
    /// the diagonal (so <c>exp</c> gives the causal decay matrix).
    /// </summary>
    public static Tensor SegSum(Tensor x)
    {
        using var scope = NewDisposeScope();
        long t = x.size(-1);
        var shape = x.shape.Append(t).ToArray();
        var strictlyLower = ones(t, t, dtype: ScalarType.Bool, device: x.device).tril(-1);
        var lower = ones(t, t, dtype: ScalarType.Bool, device: x.device).tril(0);
        var rep = x.unsqueeze(-1).expand(shape).masked_fill(strictlyLower.logical_not(), 0); // rep[i, j] = x[i] for i > j
        var sums = rep.cumsum(-2);
        return sums.masked_fill(lower.logical_not(), double.NegativeInfinity).MoveToOuterDisposeScope();
    }
}
