namespace Mblm.MLNet.Classification;

/// <summary>A seeded validation split stratified by class: each class gives its share of the held-out rows.</summary>
internal static class ValidationSplit
{
    /// <summary>About <paramref name="rows"/> row indices of <paramref name="keys"/> (one key per row) to hold out; empty for 0.</summary>
    public static HashSet<int> Choose(IReadOnlyList<uint> keys, int rows, int seed)
    {
        var held = new HashSet<int>();
        if (rows <= 0 || keys.Count == 0) return held;
        double fraction = (double)rows / keys.Count;
        var rng = new Random(unchecked(seed * 31 + 0x5A17));
        foreach (var group in Enumerable.Range(0, keys.Count).GroupBy(i => keys[i]).OrderBy(g => g.Key))
        {
            var members = group.ToArray();
            rng.Shuffle(members);
            // A class keeps at least one training row.
            int take = Math.Min(members.Length - 1, (int)Math.Round(members.Length * fraction));
            for (int i = 0; i < take; i++) held.Add(members[i]);
        }
        return held;
    }
}
