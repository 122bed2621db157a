using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Mblm.Fuzz.Core;
using Mblm.Tooling;

namespace Mblm.Fuzz;

/// <summary>
/// <c>fuzz</c>: seeded, reproducible fuzzing of every loader (safetensors, configs, pipelines, checkpoints), in child
/// processes so that crashes (stack overflow, out of memory, signals) and hangs are observed rather than suffered.
/// <para>
/// The parent makes the seed files, then runs batches of attempts in workers (<c>fuzz-worker</c>, this program again),
/// <c>--jobs</c> at a time. A worker announces each attempt before running it; when it dies or passes the timeout, the
/// attempt in flight is recorded as a crash or a hang and a new worker continues after it. Each attempt's peak RSS is the
/// worker's VmHWM, reset before the attempt (<c>/proc/self/clear_refs</c>); for CLI runs, GNU time's maximum RSS.
/// An attempt over budget + 512 MiB (the runtime, libtorch and ML.NET: a worker idles at ~300-450 MiB) is a violation.
/// </para>
/// </summary>
internal static class FuzzCommand
{
    private const string Tag = "@@fuzz ";
    private const long OverheadBytes = 512L << 20;

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    // ---------------------------------------------------------------- worker

    /// <summary><c>fuzz-worker --format F --seed S --from I --count K --budget B --seeds DIR --work DIR [--cli PATH] [--timeout-s T] [--keep]</c>.</summary>
    public static int Worker(Options o)
    {
        string format = o.Str("format", "");
        long seed = o.Long("seed", 1), from = o.Long("from", 0), count = o.Long("count", 1);
        long budget = Limits.ParseBytes(o.Str("budget", "1G")) ?? throw new ArgumentException("--budget");
        int timeout = o.Int("timeout-s", 30);
        string work = o.Str("work", Path.GetTempPath());
        string? cli = o.Has("cli") ? o.Str("cli", "") : null;
        bool keep = o.Has("keep");
        Limits.MemoryBudgetBytes = budget;
        if (o.Int("threads", 0) > 0) TorchSharp.torch.set_num_threads(o.Int("threads", 0));
        var seeds = FuzzSeeds.Ensure(o.Str("seeds", FuzzSeeds.DefaultDir));
        using var ctx = new FuzzContext(seeds);
        _ = ctx.WeightsTarget;
        ProcessMemory.Release();
        double idle = ProcessMemory.MiB("VmRSS");
        Emit(new { e = "ready", rssMiB = idle });
        for (long i = from; i < from + count; i++)
        {
            string dir = Path.Combine(work, $"{format}-{seed}-{i}");
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            // What the previous attempt freed goes back to the system first, so that this attempt's peak is its own.
            if (ProcessMemory.MiB("VmRSS") > idle + 128) ProcessMemory.Release();
            Emit(new { e = "phase", i, phase = "prepare" });
            PreparedAttempt prepared;
            try { prepared = FuzzFormats.Prepare(ctx, format, seed, i, Path.Combine(dir, "in-process")); }
            catch (Exception ex)
            {
                Emit(new { e = "harness", i, type = ex.GetType().FullName, message = ex.ToString() });
                continue;
            }
            if (cli is not null)
            {
                // The CLI first, on its own copy (a resume writes into its folder): a crash of the in-process attempt cannot lose it.
                var cliCopy = FuzzFormats.Prepare(ctx, format, seed, i, Path.Combine(dir, "cli"));
                foreach (var (name, args) in FuzzFormats.CliCommands(ctx, cliCopy))
                {
                    Emit(new { e = "phase", i, phase = "cli " + name });
                    var c = RunCli(cli, args, budget, timeout, cliCopy.AttemptDir);
                    Emit(new { e = "cli", i, command = name, outcome = c.Outcome.ToString(), type = c.Type, message = c.Message, mutation = cliCopy.Mutation,
                        seconds = Math.Round(c.Seconds, 3), rssMiB = c.RssMiB, detail = c.Detail });
                }
            }
            ProcessMemory.Release(); // what preparing the mutated file took must not count as the loader's peak
            ProcessMemory.ResetPeak();
            Emit(new { e = "start", i });
            var r = FuzzFormats.Attempt(ctx, prepared);
            double peak = ProcessMemory.MiB("VmHWM");
            Emit(new
            {
                e = "done", i, outcome = r.Outcome.ToString(), type = r.ExceptionType, message = r.Message, mutation = r.Mutation,
                seconds = Math.Round(r.Seconds, 3), rssMiB = Math.Round(peak, 1), detail = r.Outcome == Outcome.Other ? r.Detail : null, note = r.Note,
            });
            if (!keep && Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            // After an attempt over budget a fresh worker takes over: what the attempt left behind must not count against the next one.
            if (peak * (1 << 20) > budget + OverheadBytes && i + 1 < from + count)
            {
                Emit(new { e = "recycle", i });
                return 0;
            }
        }
        Emit(new { e = "finished" });
        return 0;
    }

    private static void Emit(object o) => Console.Out.WriteLine(Tag + JsonSerializer.Serialize(o, Json));

    private sealed record CliResult(Outcome Outcome, string? Type, string? Message, double Seconds, double RssMiB, string? Detail);

    /// <summary>Runs the CLI (under GNU time for its peak RSS when present), kills it past the timeout, and classifies the result.</summary>
    private static CliResult RunCli(string cli, string[] args, long budget, int timeoutS, string dir)
    {
        string rssFile = Path.Combine(dir, ".cli-rss");
        bool gnuTime = File.Exists("/usr/bin/time");
        var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var command = new List<string>();
        if (gnuTime) command.AddRange(["/usr/bin/time", "-f", "%M", "-o", rssFile]);
        if (cli.EndsWith(".dll", StringComparison.Ordinal)) command.AddRange(["dotnet", cli]);
        else command.Add(cli);
        command.AddRange(args);
        psi.FileName = command[0];
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        psi.Environment["MBLM_MEMORY_BUDGET"] = budget.ToString(CultureInfo.InvariantCulture);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        double polled = 0;
        bool exited = false;
        while (clock.Elapsed.TotalSeconds < timeoutS)
        {
            if (p.WaitForExit(100)) { exited = true; break; }
            polled = Math.Max(polled, ProcessMemory.MiB("VmRSS", p.Id));
        }
        if (!exited)
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.WaitForExit();
        }
        p.WaitForExit();
        string err = stderr.Result, _ = stdout.Result;
        double seconds = clock.Elapsed.TotalSeconds;
        double rss = polled;
        int exit = p.ExitCode;
        if (gnuTime && File.Exists(rssFile))
        {
            var lines = File.ReadAllLines(rssFile);
            if (lines.Length > 0 && double.TryParse(lines[^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double kb)) rss = Math.Max(rss, kb / 1024);
            File.Delete(rssFile);
        }
        rss = Math.Round(rss, 1);
        string tail = Tail(err, 1500);
        if (!exited) return new CliResult(Outcome.Hang, null, $"killed after {timeoutS} s", seconds, rss, tail);
        if (exit == 0) return new CliResult(Outcome.Ok, null, null, seconds, rss, null);
        var errLines = err.Replace("\r", "\n").Split('\n').Where(l => l.Length > 0).ToList();
        bool trace = errLines.Any(l => l.StartsWith("   at ", StringComparison.Ordinal) || l.Contains("Unhandled exception", StringComparison.Ordinal));
        string prefix = $"mblm {args[0]}: ";
        int at = errLines.FindLastIndex(l => l.StartsWith(prefix, StringComparison.Ordinal));
        bool onlyContinuation = at >= 0 && errLines.Skip(at + 1).All(l => l.StartsWith("  ", StringComparison.Ordinal) && !l.StartsWith("   at ", StringComparison.Ordinal));
        if (exit is 1 or 2)
        {
            if (!trace && onlyContinuation) return new CliResult(Outcome.Clean, $"exit {exit}", errLines[at], seconds, rss, null);
            return new CliResult(Outcome.Other, $"exit {exit}, unclean stderr", errLines.LastOrDefault(l => !l.StartsWith("   at ", StringComparison.Ordinal)) ?? "(no message)", seconds, rss, tail);
        }
        if (exit == 3) // the CLI's "internal error": an unexpected exception, caught and reported
            return new CliResult(Outcome.Other, "exit 3 (internal error)", at >= 0 ? errLines[at] : errLines.LastOrDefault() ?? "(no message)", seconds, rss, tail);
        string? crashLine = errLines.FirstOrDefault(l => l.Contains("Unhandled exception", StringComparison.Ordinal) || l.Contains("what():", StringComparison.Ordinal)
            || l.Contains("Stack overflow", StringComparison.Ordinal))
                            ?? errLines.LastOrDefault(l => !l.StartsWith("   at ", StringComparison.Ordinal));
        return new CliResult(Outcome.Crash, DescribeExit(exit, err), crashLine, seconds, rss, tail);
    }

    private static string Tail(string s, int n) => s.Length <= n ? s : "…" + s[^n..];

    private static string DescribeExit(int exit, string stderr)
    {
        string what = exit > 128
            && exit < 160 ? $"exit {exit} (signal {exit - 128}{(exit - 128) switch { 6 => " SIGABRT", 9 => " SIGKILL", 11 => " SIGSEGV", 7 => " SIGBUS", _ => "" }})" : $"exit {exit}";
        if (stderr.Contains("Stack overflow", StringComparison.Ordinal)) what += ", stack overflow";
        if (stderr.Contains("Out of memory", StringComparison.Ordinal) || stderr.Contains("OutOfMemory", StringComparison.Ordinal)) what += ", out of memory";
        return what;
    }

    // ---------------------------------------------------------------- parent

    private sealed class Row(string format, string runner)
    {
        public string Format { get; } = format;
        public string Runner { get; } = runner;
        public int Attempts, Ok, Clean, Other, Crash, Hang, Harness, OverBudget;
        public double PeakMiB;
        public readonly List<Record> Failures = [];
    }

    private sealed record Record(string Format, string Runner, long Index, string Outcome, string? Type, string? Message, string? Mutation, double Seconds, double RssMiB, string? Detail,
        string? Note = null);

    private sealed class Settings
    {
        public required long Seed, From, Count, Budget, KillRss;
        public required int Timeout, Jobs, Batch;
        public required string SeedsDir, Work, Self;
        public required string[] SelfArgs;
        public string? Cli;
        public bool Keep, Verbose;
    }

    /// <summary><c>fuzz</c>: see the class summary and Program.cs for the flags.</summary>
    public static int Run(Options o)
    {
        var formats = o.Str("formats", string.Join(",", FuzzFormats.All)).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var f in formats)
            if (!FuzzFormats.All.Contains(f)) { Console.Error.WriteLine($"fuzz: unknown format '{f}' (formats: {string.Join(", ", FuzzFormats.All)})"); return 2; }
        long perFormat = o.Long("per-format", 1000);
        long budget = Limits.ParseBytes(o.Str("budget", "1G")) ?? throw new ArgumentException("--budget: not a size");
        string work = Path.GetFullPath(o.Str("work", Path.Combine(Path.GetTempPath(), $"mblm-fuzz-work-{Environment.ProcessId}")));
        Directory.CreateDirectory(work);
        var (self, selfArgs) = SelfCommand();
        var s = new Settings
        {
            Seed = o.Long("seed", 1), From = o.Long("from", 0), Count = o.Long("count", perFormat), Budget = budget,
            KillRss = Limits.ParseBytes(o.Str("kill-rss", "8G")) ?? (8L << 30),
            Timeout = o.Int("timeout-s", 30), Jobs = o.Int("jobs", Math.Max(1, Environment.ProcessorCount)), Batch = o.Int("batch", 100),
            SeedsDir = Path.GetFullPath(o.Str("seeds", FuzzSeeds.DefaultDir)), Work = work, Self = self, SelfArgs = selfArgs,
            Cli = o.Has("cli") ? FindCli(o.Str("cli-path", "")) : null, Keep = o.Has("keep"), Verbose = o.Has("verbose") || o.Long("count", 2) == 1,
        };
        if (o.Has("cli") && s.Cli is null) { Console.Error.WriteLine("fuzz: --cli: the mblm CLI is not built (dotnet build MblmMLNet.sln -c Release), or give --cli-path"); return 2; }

        Console.WriteLine($"fuzz: seed {s.Seed}, attempts [{s.From}, {s.From + s.Count}) per format, formats {string.Join(",", formats)}, timeout {s.Timeout} s, " +
                          $"budget {Limits.FormatBytes(s.Budget)} (violation above budget + {OverheadBytes >> 20} MiB = {Limits.FormatBytes(s.Budget + OverheadBytes)}), " +
                          $"{s.Jobs} workers at a time, batches of {s.Batch}{(s.Cli is not null ? $", CLI {s.Cli}" : "")}");
        var clock = Stopwatch.StartNew();
        var seeds = FuzzSeeds.Ensure(s.SeedsDir);
        Console.WriteLine($"seeds: {seeds.Dir} ({clock.Elapsed.TotalSeconds:F1} s)");
        foreach (var d in seeds.Digests()) Console.WriteLine("  " + d);
        // The unmutated seeds must load, or every attempt would fail for the harness's own reason.
        using (var ctx = new FuzzContext(seeds))
        {
            foreach (var f in formats)
            {
                string dir = Path.Combine(work, "seed-check-" + f);
                string path = f switch
                {
                    "safetensors" => seeds.Weights, "pth" => seeds.Pth, "config-json" => seeds.ConfigJson, "config-yaml" => seeds.ConfigYaml, "pipeline" => seeds.Pipeline,
                    _ => Path.Combine(dir, "run"),
                };
                if (f == "checkpoint") CopyFolder(seeds.Run, path);
                var r = FuzzFormats.Attempt(ctx, new PreparedAttempt(f, s.Seed, -1, path, "(none: the seed)", dir));
                TryDelete(dir);
                if (r.Outcome != Outcome.Ok) { Console.Error.WriteLine($"fuzz: the {f} seed does not load: {r.Detail}"); return 2; }
            }
            Console.WriteLine($"seeds load unmutated: {string.Join(", ", formats)}");
        }

        var rows = new ConcurrentDictionary<(string, string), Row>();
        var records = new ConcurrentQueue<Record>();
        var batches = new ConcurrentQueue<(string Format, long From, long Count)>();
        foreach (var f in formats)
            for (long i = s.From; i < s.From + s.Count; i += s.Batch) batches.Enqueue((f, i, Math.Min(s.Batch, s.From + s.Count - i)));
        int total = batches.Count, doneBatches = 0;
        var progressLock = new object();
        var workers = Enumerable.Range(0, s.Jobs).Select(_ => Task.Run(() =>
        {
            while (batches.TryDequeue(out var b))
            {
                RunBatch(s, b.Format, b.From, b.Count, rows, records);
                lock (progressLock)
                {
                    doneBatches++;
                    Console.WriteLine($"  [{clock.Elapsed:hh\\:mm\\:ss}] batch {doneBatches}/{total}: {b.Format} [{b.From}, {b.From + b.Count})");
                }
            }
        })).ToArray();
        Task.WaitAll(workers);

        string results = Path.Combine(work, "fuzz-results.jsonl");
        File.WriteAllLines(results, records.OrderBy(r => r.Format).ThenBy(r => r.Runner).ThenBy(r => r.Index).Select(r => JsonSerializer.Serialize(r, Json)));
        bool failed = Report(s, formats, rows, records, clock.Elapsed);
        Console.WriteLine($"\nall results: {results}");
        if (!s.Keep)
        {
            foreach (var dir in Directory.GetDirectories(work)) TryDelete(dir);
        }
        else Console.WriteLine($"attempt folders kept under {work}");
        return failed ? 1 : 0;
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>This program, to start workers: the apphost, or <c>dotnet the.dll</c>.</summary>
    private static (string, string[]) SelfCommand()
    {
        string process = Environment.ProcessPath!;
        string dll = typeof(FuzzCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(process) == "dotnet" ? (process, [dll]) : (process, []);
    }

    private static string? FindCli(string given)
    {
        if (given.Length > 0) return File.Exists(given) ? Path.GetFullPath(given) : null;
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "MblmMLNet.sln"))) dir = Path.GetDirectoryName(dir);
        if (dir is null) return null;
        foreach (var config in new[] { "Release", "Debug" })
        {
            string bin = Path.Combine(dir, "src", "Mblm.Cli", "bin", config, "net10.0");
            foreach (var name in new[] { "mblm", "Mblm.Cli", "mblm.dll", "Mblm.Cli.dll" })
                if (File.Exists(Path.Combine(bin, name))) return Path.Combine(bin, name);
        }
        return null;
    }

    private static Row RowOf(ConcurrentDictionary<(string, string), Row> rows, string format, string runner) =>
        rows.GetOrAdd((format, runner), k => new Row(k.Item1, k.Item2));

    private static void Add(Settings s, ConcurrentDictionary<(string, string), Row> rows, ConcurrentQueue<Record> records, Record r)
    {
        var row = RowOf(rows, r.Format, r.Runner);
        bool over = r.RssMiB * (1 << 20) > s.Budget + OverheadBytes;
        lock (row)
        {
            row.Attempts++;
            switch (r.Outcome)
            {
                case "Ok": row.Ok++; break;
                case "Clean": row.Clean++; break;
                case "Other": row.Other++; break;
                case "Crash": row.Crash++; break;
                case "Hang": row.Hang++; break;
                default: row.Harness++; break;
            }
            if (over) row.OverBudget++;
            row.PeakMiB = Math.Max(row.PeakMiB, r.RssMiB);
            if (r.Outcome is not ("Ok" or "Clean") || over) row.Failures.Add(r);
        }
        records.Enqueue(r);
        if (s.Verbose)
        {
            Console.WriteLine($"\n{r.Format} #{r.Index} [{r.Runner}]: {r.Outcome}{(over ? " (over budget)" : "")} in {r.Seconds:F2} s, peak RSS {r.RssMiB:F0} MiB");
            Console.WriteLine($"  mutation: {r.Mutation}");
            if ((r.Type is not null || r.Message is not null) && r.Detail?.StartsWith(r.Type ?? "\0", StringComparison.Ordinal) != true) Console.WriteLine($"  {r.Type}: {r.Message}");
            if (r.Detail is not null) Console.WriteLine("  " + r.Detail.Replace("\n", "\n  "));
            if (r.Note is not null) Console.WriteLine("  warnings: " + r.Note);
        }
    }

    /// <summary>Runs attempts [from, from + count) of a format, restarting a worker after each crash or hang.</summary>
    private static void RunBatch(Settings s, string format, long from, long count, ConcurrentDictionary<(string, string), Row> rows, ConcurrentQueue<Record> records)
    {
        long next = from, end = from + count;
        int setupFailures = 0;
        RowOf(rows, format, "in-process");
        while (next < end)
        {
            long launchedAt = next;
            var psi = new ProcessStartInfo(s.Self) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in s.SelfArgs) psi.ArgumentList.Add(a);
            var args = new List<string>
            {
                "fuzz-worker", "--format", format, "--seed", s.Seed.ToString(CultureInfo.InvariantCulture), "--from", next.ToString(CultureInfo.InvariantCulture),
                "--count", (end - next).ToString(CultureInfo.InvariantCulture), "--budget", s.Budget.ToString(CultureInfo.InvariantCulture),
                "--timeout-s", s.Timeout.ToString(CultureInfo.InvariantCulture), "--seeds", s.SeedsDir, "--work", s.Work,
                "--threads", s.Jobs > 1 ? "1" : "0",
            };
            if (s.Cli is not null) args.AddRange(["--cli", s.Cli]);
            if (s.Keep) args.Add("--keep");
            foreach (var a in args) psi.ArgumentList.Add(a);
            var lines = new BlockingCollection<string?>();
            var stderr = new StringBuilder();
            using var p = new Process { StartInfo = psi };
            p.OutputDataReceived += (_, e) => lines.Add(e.Data);
            p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) { stderr.Append(e.Data).Append('\n'); if (stderr.Length > 20_000) stderr.Remove(0, stderr.Length - 10_000); } };
            p.Start();
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();

            long? inFlight = null;
            string phase = "setup";
            var phaseClock = Stopwatch.StartNew();
            double phaseRss = 0;
            bool finished = false, killed = false;
            string? killReason = null;
            while (true)
            {
                if (lines.TryTake(out var line, 100))
                {
                    if (line is null) break;
                    if (!line.StartsWith(Tag, StringComparison.Ordinal)) continue;
                    using var doc = JsonDocument.Parse(line[Tag.Length..]);
                    var m = doc.RootElement;
                    string? Str(string k) => m.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                    double Num(string k) => m.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : 0;
                    switch (Str("e"))
                    {
                        case "ready": phase = "idle"; break;
                        case "start": inFlight = m.GetProperty("i").GetInt64(); phase = "in-process"; phaseClock.Restart(); phaseRss = 0; setupFailures = 0; break;
                        case "phase": inFlight = m.GetProperty("i").GetInt64(); phase = Str("phase")!; phaseClock.Restart(); break;
                        case "harness":
                            Add(s, rows, records, new Record(format, "in-process", m.GetProperty("i").GetInt64(), "Harness", Str("type"), Str("message"), null, 0, 0, null));
                            inFlight = null; next = m.GetProperty("i").GetInt64() + 1; phase = "idle";
                            break;
                        case "done":
                        {
                            long i = m.GetProperty("i").GetInt64();
                            Add(s, rows, records, new Record(format, "in-process", i, Str("outcome")!, Str("type"), Str("message"), Str("mutation"), Num("seconds"),
                                Math.Max(Num("rssMiB"), phaseRss), Str("detail"), Str("note")));
                            next = i + 1;
                            phase = "idle";
                            phaseClock.Restart();
                            break;
                        }
                        case "cli":
                        {
                            long i = m.GetProperty("i").GetInt64();
                            Add(s, rows, records, new Record(format, "cli " + Str("command"), i, Str("outcome")!, Str("type"), Str("message"), Str("mutation"), Num("seconds"),
                                Num("rssMiB"), Str("detail")));
                            phase = "idle";
                            phaseClock.Restart();
                            break;
                        }
                        case "finished": finished = true; break;
                        case "recycle": phase = "recycle"; break;
                    }
                    continue;
                }
                // Watchdogs: the in-process phase against the timeout (the worker times CLI runs itself), RSS against the cap.
                double rss = ProcessMemory.MiB("VmRSS", p.Id);
                if (phase == "in-process") phaseRss = Math.Max(phaseRss, rss);
                double limit = phase switch { "in-process" => s.Timeout, "setup" => 600, "idle" => s.Timeout + 60, _ => s.Timeout + 60 };
                if (!killed && phaseClock.Elapsed.TotalSeconds > limit)
                {
                    killed = true;
                    killReason = $"hang: {phase} ran past {limit} s";
                    Kill(p);
                }
                if (!killed && rss * (1 << 20) > s.KillRss)
                {
                    killed = true;
                    killReason = $"killed by the harness at {rss:F0} MiB RSS (above --kill-rss {Limits.FormatBytes(s.KillRss)})";
                    Kill(p);
                }
            }
            p.WaitForExit();
            if (finished && next >= end) break;
            string err;
            lock (stderr) err = stderr.ToString();
            if (inFlight is long failedAt && phase == "in-process")
            {
                string outcome = killReason?.StartsWith("hang", StringComparison.Ordinal) == true ? "Hang" : "Crash";
                string type = killReason ?? DescribeExit(p.ExitCode, err);
                double rss = killReason?.StartsWith("killed", StringComparison.Ordinal) == true ? Math.Max(phaseRss, s.KillRss / (double)(1 << 20)) : phaseRss;
                Add(s, rows, records, new Record(format, "in-process", failedAt, outcome, type, FirstLine(err), Mutation(s, format, failedAt), phaseClock.Elapsed.TotalSeconds, rss, Tail(err, 3000)));
                next = failedAt + 1;
            }
            else if (inFlight is long cliAt && phase.StartsWith("cli ", StringComparison.Ordinal))
            {
                Add(s, rows, records, new Record(format, phase, cliAt, killReason?.StartsWith("hang", StringComparison.Ordinal) == true ? "Hang" : "Harness",
                    killReason ?? "worker died during a CLI run", FirstLine(err), Mutation(s, format, cliAt), phaseClock.Elapsed.TotalSeconds, 0, Tail(err, 3000)));
                next = cliAt + 1;
            }
            else if (inFlight is long prepAt && phase == "prepare")
            {
                Add(s, rows, records, new Record(format, "in-process", prepAt, killReason?.StartsWith("hang", StringComparison.Ordinal) == true ? "Hang" : "Harness",
                    "worker died while making the mutated input: " + (killReason ?? DescribeExit(p.ExitCode, err)), FirstLine(err), null, phaseClock.Elapsed.TotalSeconds, 0, Tail(err, 3000)));
                next = prepAt + 1;
            }
            else if (next == launchedAt)
            {
                // Died before its first attempt: retry once, then give up on the batch, saying so.
                if (++setupFailures >= 2)
                {
                    for (long i = next; i < end; i++)
                        Add(s, rows, records, new Record(format, "in-process", i, "Harness", "worker failed to start: " + DescribeExit(p.ExitCode, err), FirstLine(err), null, 0, 0, Tail(err, 3000)));
                    break;
                }
            }
            // Otherwise it died between attempts: a new worker continues from `next`.
        }
    }

    // The message of a dead worker: its first line, and libtorch's what() line when it aborted on a C++ exception.
    private static string? FirstLine(string s)
    {
        var lines = s.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("at ", StringComparison.Ordinal)).ToList();
        string? what = lines.FirstOrDefault(l => l.StartsWith("what():", StringComparison.Ordinal));
        return lines.Count == 0 ? null : what is null ? lines[0] : $"{lines[0]} {what}";
    }

    // The mutation of an attempt whose worker died before reporting it: made again here (mutations are deterministic).
    private static string? Mutation(Settings s, string format, long index)
    {
        try
        {
            using var ctx = new FuzzContext(FuzzSeeds.Ensure(s.SeedsDir));
            string dir = Path.Combine(s.Work, $"replay-{format}-{index}");
            var a = FuzzFormats.Prepare(ctx, format, s.Seed, index, dir);
            TryDelete(dir);
            return a.Mutation;
        }
        catch (Exception e) { return $"(could not replay the mutation: {e.Message})"; }
    }

    private static void Kill(Process p)
    {
        try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } catch (System.ComponentModel.Win32Exception) { }
    }

    // ---------------------------------------------------------------- report

    private static bool Report(Settings s, string[] formats, ConcurrentDictionary<(string, string), Row> rows, ConcurrentQueue<Record> records, TimeSpan elapsed)
    {
        var ordered = rows.Values.OrderBy(r => Array.IndexOf(formats, r.Format)).ThenBy(r => r.Runner == "in-process" ? "" : r.Runner).ToList();
        Console.WriteLine($"\n## Fuzz results (seed {s.Seed}, attempts [{s.From}, {s.From + s.Count}) per format, {elapsed:hh\\:mm\\:ss}, budget {Limits.FormatBytes(s.Budget)}, " +
            $"violation above {Limits.FormatBytes(s.Budget + OverheadBytes)})\n");
        bool anyHarness = ordered.Any(r => r.Harness > 0);
        Console.WriteLine("| format | runner | attempts | ok | clean typed errors | other exceptions | crashes | hangs | peak RSS MiB (max) | over budget |" + (anyHarness ? " harness errors |" : ""));
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (anyHarness ? " ---: |" : ""));
        foreach (var r in ordered)
            Console.WriteLine($"| {r.Format} | {r.Runner} | {r.Attempts} | {r.Ok} | {r.Clean} | {r.Other} | {r.Crash} | {r.Hang} | {r.PeakMiB:F0} | {r.OverBudget} |"
                + (anyHarness ? $" {r.Harness} |" : ""));

        bool failed = ordered.Any(r => r.Other + r.Crash + r.Hang + r.OverBudget > 0);
        // Attempts that loaded after the library skipped something (a resume passing over damaged checkpoints): the warning
        // quotes the exception the loader threw, which the public API does not let through.
        var noted = records.Where(r => r.Note is not null && r.Outcome == "Ok").ToList();
        foreach (var g in noted.GroupBy(r => (r.Format, r.Runner)))
        {
            Console.WriteLine($"\n{g.Key.Format} / {g.Key.Runner}: {g.Count()} ok attempts came with warnings (what the loader threw, then swallowed), by kind:");
            foreach (var k in g.GroupBy(r => Normalize(r.Note)).OrderByDescending(k => k.Count()).Take(25))
                Console.WriteLine($"  {k.Count(),5} × {k.Key}  (e.g. {string.Join(", ", k.Take(4).Select(x => "#" + x.Index))})");
        }
        foreach (var r in ordered.Where(r => r.Failures.Count > 0))
        {
            var failures = r.Failures.OrderBy(f => f.Index).ToList();
            Console.WriteLine($"\n### {r.Format} / {r.Runner}: {failures.Count} failing attempts");
            Console.WriteLine("by kind (outcome, type, message with numbers and paths elided):");
            foreach (var g in failures.GroupBy(f
                => $"{f.Outcome}{(f.RssMiB * (1 << 20) > s.Budget + OverheadBytes ? " + over budget" : "")} | {f.Type} | {Normalize(f.Message)}").OrderByDescending(g => g.Count()))
                Console.WriteLine($"  {g.Count(),5} × {g.Key}  (first: #{g.First().Index}, e.g. {string.Join(", ", g.Take(5).Select(x => "#" + x.Index))})");
            Console.WriteLine("first few:");
            foreach (var f in failures.Take(5))
            {
                Console.WriteLine($"  #{f.Index} {f.Outcome}{(f.RssMiB * (1 << 20) > s.Budget + OverheadBytes ? $" (over budget: {f.RssMiB:F0} MiB)" : "")}: {f.Type}: {Trim(f.Message, 400)}");
                Console.WriteLine($"      mutation: {Trim(f.Mutation, 400)}");
                Console.WriteLine($"      reproduce: {FuzzFormats.Reproduce(f.Format, s.Seed, f.Index, f.Runner != "in-process")}");
            }
        }
        Console.WriteLine(failed ? "\nFAIL: crashes, hangs, other exceptions or over-budget attempts (see above)" : "\nPASS: every attempt loaded or failed with a documented, typed " +
            "error within the budget");
        return failed;
    }

    private static string Trim(string? s, int n) => s is null ? "" : (s.Length <= n ? s : s[..n] + "…").Replace("\n", " ⏎ ");

    /// <summary>A message with file paths, numbers and quoted names elided, to group failures of one kind.</summary>
    public static string Normalize(string? message)
    {
        if (message is null) return "";
        string m = message.Split('\n')[0];
        m = System.Text.RegularExpressions.Regex.Replace(m, @"checkpoint '[^']*'", "checkpoint '…'");
        m = System.Text.RegularExpressions.Regex.Replace(m, @"(/[^\s'"":,]+)+", "<path>");
        m = System.Text.RegularExpressions.Regex.Replace(m, @"'[^']*'", "'…'");
        m = System.Text.RegularExpressions.Regex.Replace(m, @"-?\d[\d,._]*", "N");
        return m.Length > 160 ? m[..160] + "…" : m;
    }
}
