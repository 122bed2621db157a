using System.Diagnostics;
using System.Net.Http.Json;

namespace Mblm.Examples.Serving;

/// <summary>One level of a load test.</summary>
/// <param name="Clients">Concurrent clients, each sending its next request when the last one is answered.</param>
/// <param name="Requests">Requests answered in the time.</param>
/// <param name="Seconds">Measured time.</param>
/// <param name="P50Ms">Median latency.</param>
/// <param name="P99Ms">99th-percentile latency.</param>
public sealed record LoadLevel(int Clients, int Requests, double Seconds, double P50Ms, double P99Ms)
{
    /// <summary>Answered requests per second.</summary>
    public double Throughput => Requests / Seconds;
}

/// <summary>A closed-loop HTTP load test of <c>POST /score</c>: N clients, each one request at a time, for a fixed time.</summary>
public static class LoadTest
{
    /// <summary>Runs each level in <paramref name="clientCounts"/> for <paramref name="duration"/> after a short warm-up.</summary>
    public static async Task<IReadOnlyList<LoadLevel>> RunAsync(Uri server, IReadOnlyList<string> texts, IEnumerable<int> clientCounts,
        TimeSpan duration, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfZero(texts.Count);
        using var http = new HttpClient { BaseAddress = server, Timeout = TimeSpan.FromMinutes(2) };
        for (int i = 0; i < 4; i++) await Send(http, texts[i % texts.Count], cancellationToken); // warm-up: JIT, first forwards
        var levels = new List<LoadLevel>();
        foreach (int clients in clientCounts)
        {
            var latencies = new List<double>[clients];
            var clock = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
            {
                var mine = latencies[c] = [];
                for (int i = c; clock.Elapsed < duration; i += clients)
                {
                    long start = Stopwatch.GetTimestamp();
                    await Send(http, texts[i % texts.Count], cancellationToken);
                    mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                }
            }, cancellationToken)));
            double seconds = clock.Elapsed.TotalSeconds;
            var all = latencies.SelectMany(l => l).Order().ToArray();
            levels.Add(new LoadLevel(clients, all.Length, seconds, Percentile(all, 0.50), Percentile(all, 0.99)));
        }
        return levels;
    }

    private static async Task Send(HttpClient http, string text, CancellationToken cancellationToken)
    {
        using var response = await http.PostAsJsonAsync("/score", new ScoreRequest(text), cancellationToken);
        response.EnsureSuccessStatusCode();
    }

    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];

    /// <summary>The levels as a Markdown table.</summary>
    public static string Table(IReadOnlyList<LoadLevel> levels)
    {
        var lines = new List<string> { "| clients | requests/s | p50 ms | p99 ms | requests |", "|---:|---:|---:|---:|---:|" };
        lines.AddRange(levels.Select(l => $"| {l.Clients} | {l.Throughput:F1} | {l.P50Ms:F1} | {l.P99Ms:F1} | {l.Requests} |"));
        return string.Join(Environment.NewLine, lines);
    }
}
