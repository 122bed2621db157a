using System.Globalization;
using System.Text;
using Microsoft.ML;

namespace Mblm.MLNet.Experiments;

/// <summary>The outcome of an experiment: every trial run, the best, and the best run's fitted model (owned by this result).</summary>
/// <typeparam name="TTransformer">The estimator's transformer.</typeparam>
public sealed class MblmExperimentResult<TTransformer> : IDisposable where TTransformer : class, ITransformer, IDisposable
{
    internal MblmExperimentResult(IReadOnlyList<MblmTrialRecord> trials, MblmTrialRecord? best, TTransformer? bestModel, MblmObjective objective)
    {
        Trials = trials;
        Best = best;
        BestModel = bestModel;
        Objective = objective;
    }

    /// <summary>Every trial run (a trial promoted by ASHA has one per rung), in the order they ended.</summary>
    public IReadOnlyList<MblmTrialRecord> Trials { get; }
    /// <summary>The completed run with the best objective, or null when none completed.</summary>
    public MblmTrialRecord? Best { get; }
    /// <summary>The best run's fitted model, or null when none completed.</summary>
    public TTransformer? BestModel { get; }
    /// <summary>The objective.</summary>
    public MblmObjective Objective { get; }

    /// <summary>The runs as a Markdown table: trial, rung, steps, status, objective, seconds, parameters.</summary>
    public string ToTable()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"| trial | rung | steps | status | {Objective.Name} | seconds | parameters |");
        sb.AppendLine("|---:|---:|---:|---|---:|---:|---|");
        foreach (var t in Trials)
        {
            string p = string.Join(", ", t.Parameters.Select(kv => $"{kv.Key}={Format(kv.Value)}"));
            string status = t.Status + (t.Error is { } e ? $": {Truncate(e, 80)}" : "") + (ReferenceEquals(t, Best) ? " (best)" : "");
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {t.Id} | {t.Rung} | {t.Steps?.ToString(CultureInfo.InvariantCulture) ?? "-"} | {status} | {t.Objective:F4} | {t.Seconds:F1} | {(p.Length == 0 ? "(base options)" : p)} |"));
        }
        return sb.ToString();
    }

    /// <summary>Writes the runs as CSV (one column per search dimension), atomically.</summary>
    public void WriteCsv(string path)
    {
        var names = Trials.SelectMany(t => t.Parameters.Keys).Distinct().ToList();
        var sb = new StringBuilder();
        sb.AppendLine(string.Join(",", new[] { "trial", "rung", "steps", "status", Objective.Name, "seconds", "ended_at" }.Concat(names).Select(Csv)));
        foreach (var t in Trials)
        {
            var cells = new[]
            {
                t.Id.ToString(CultureInfo.InvariantCulture), t.Rung.ToString(CultureInfo.InvariantCulture), t.Steps?.ToString(CultureInfo.InvariantCulture) ?? "",
                t.Status.ToString(), double.IsFinite(t.Objective) ? t.Objective.ToString("R", CultureInfo.InvariantCulture) : "",
                t.Seconds.ToString("F2", CultureInfo.InvariantCulture), t.EndedAt.ToString("F2", CultureInfo.InvariantCulture),
            }.Concat(names.Select(n => t.Parameters.TryGetValue(n, out var v) ? Format(v) : ""));
            sb.AppendLine(string.Join(",", cells.Select(Csv)));
        }
        Write(path, sb.ToString());
    }

    /// <summary>
    /// Writes an SVG plot (viewable in any browser, and rendered where the file is browsed): the objective of every completed
    /// run against the time it ended, and the best so far as a step line.
    /// </summary>
    public void WritePlot(string path, string? title = null)
    {
        const int W = 720, H = 420, L = 70, R = 20, T = 40, B = 50;
        var done = Trials.Where(t => t.Status == MblmTrialStatus.Completed).ToList();
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.AppendLine(CultureInfo.InvariantCulture, $"<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
        sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{W / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{Escape(title ?? $"experiment: {Objective.Name} by time")}</text>");
        if (done.Count > 0)
        {
            double x1 = Math.Max(1e-9, done.Max(t => t.EndedAt)), y0 = done.Min(t => t.Objective), y1 = done.Max(t => t.Objective);
            if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
            double pad = (y1 - y0) * 0.05;
            (y0, y1) = (y0 - pad, y1 + pad);
            string X(double x) => (L + x / x1 * (W - L - R)).ToString("F1", CultureInfo.InvariantCulture);
            string Y(double y) => (T + (y1 - y) / (y1 - y0) * (H - T - B)).ToString("F1", CultureInfo.InvariantCulture);
            sb.AppendLine(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" y1=\"{H - B}\" x2=\"{W - R}\" y2=\"{H - B}\" stroke=\"black\"/>");
            sb.AppendLine(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{H - B}\" stroke=\"black\"/>");
            for (int i = 0; i <= 4; i++)
            {
                double y = y0 + (y1 - y0) * i / 4, x = x1 * i / 4;
                sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{L - 6}\" y=\"{Y(y)}\" text-anchor=\"end\">{y:G4}</text>");
                sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{X(x)}\" y=\"{H - B + 18}\" text-anchor=\"middle\">{x:F0}</text>");
            }
            sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{(L + W - R) / 2}\" y=\"{H - 10}\" text-anchor=\"middle\">seconds</text>");
            var path2 = new StringBuilder();
            MblmTrialRecord? best = null;
            foreach (var t in done.OrderBy(t => t.EndedAt))
            {
                if (best is not null) path2.Append(CultureInfo.InvariantCulture, $" L{X(t.EndedAt)},{Y(best.Objective)}");
                if (best is null || Objective.Better(t.Objective, best.Objective)) best = t;
                path2.Append(CultureInfo.InvariantCulture, $"{(path2.Length == 0 ? "M" : " L")}{X(t.EndedAt)},{Y(best.Objective)}");
                string colour = t.Rung switch { 0 => "#1f77b4", 1 => "#ff7f0e", 2 => "#2ca02c", _ => "#d62728" };
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"<circle cx=\"{X(t.EndedAt)}\" cy=\"{Y(t.Objective)}\" r=\"4\" fill=\"{colour}\"><title>trial {t.Id} rung {t.Rung}: {t.Objective:G5}</title></circle>");
            }
            sb.AppendLine(CultureInfo.InvariantCulture, $"<path d=\"{path2}\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/>");
            sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{W - R}\" y=\"{T - 4}\" text-anchor=\"end\">dots: runs (colour = rung); line: best so far</text>");
        }
        sb.AppendLine("</svg>");
        Write(path, sb.ToString());
    }

    /// <summary>Disposes the best model.</summary>
    public void Dispose() => BestModel?.Dispose();

    private static string Format(object v) => v is double d ? d.ToString("G6", CultureInfo.InvariantCulture) : Convert.ToString(v, CultureInfo.InvariantCulture) ?? "";
    private static string Truncate(string s, int n) => s.Length <= n ? s : s[..n] + "…";
    private static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
    private static string Escape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal);

    private static void Write(string path, string text)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        AtomicFile.WriteAllText(path, text);
    }
}
