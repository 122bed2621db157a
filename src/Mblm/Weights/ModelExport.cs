using Mblm.Config;
using Mblm.Model;

namespace Mblm.Weights;

/// <summary>
/// Writes a model for other tools: for the Python reference (a training YAML and a <c>.pth</c> checkpoint, what its
/// trainer reads and resumes from) or as safetensors with a JSON config. Every file is first written under a temporary
/// name in the target folder; only when all are complete are they moved into place (files already replaced are put back
/// if a later move fails), so a failed export leaves the folder's existing files as they were.
/// </summary>
public static class ModelExport
{
    /// <summary>The reference training YAML's file name.</summary>
    public const string ReferenceConfigFile = "config.yaml";

    /// <summary>The reference checkpoint's file name.</summary>
    public const string ReferenceWeightsFile = "model.pth";

    /// <summary>The JSON config's file name (safetensors export).</summary>
    public const string ConfigJsonFile = "config.json";

    /// <summary>The safetensors file's name.</summary>
    public const string SafeTensorsFile = "weights.safetensors";

    /// <summary>
    /// Writes <c>dir/config.yaml</c> (<see cref="ConfigWriter.ToTrainingYaml"/> with <paramref name="settings"/>) and
    /// <c>dir/model.pth</c> (<c>{"MODEL": state_dict, "LOSS": loss}</c>; <c>None</c> when <paramref name="loss"/> is null).
    /// With <paramref name="resume"/>, the YAML's <c>resume</c> section points at <c>dir/model.pth</c> (absolute path) so
    /// that the reference's trainer starts from these weights; the trainer logs the checkpoint's loss with a float format
    /// and ranks it among its best models, which fails on <c>None</c>, so a missing <paramref name="loss"/> is then stored
    /// as <c>inf</c> (ranked last). Returns the paths written. Settings are checked before anything is written
    /// (<see cref="ConfigException"/>).
    /// </summary>
    public static IReadOnlyList<string> ExportReference(MblmModel model, string dir, ReferenceTrainingSettings? settings = null, double? loss = null, bool resume = false)
    {
        settings ??= new ReferenceTrainingSettings();
        if (resume)
        {
            settings = settings with { ResumeCheckpointFile = Path.GetFullPath(Path.Combine(dir, ReferenceWeightsFile)) };
            loss ??= double.PositiveInfinity;
        }
        string yaml = ConfigWriter.ToTrainingYaml(model.Config, settings);
        return WriteAll(dir,
        [
            (ReferenceConfigFile, path => File.WriteAllText(path, yaml)),
            (ReferenceWeightsFile, path => PyTorchCheckpoint.Save(model.state_dict(), path, loss)),
        ]);
    }

    /// <summary>Writes <c>dir/weights.safetensors</c> and <c>dir/config.json</c> (<see cref="ConfigWriter.ToJson(MblmConfig)"/>). Returns the paths written.</summary>
    public static IReadOnlyList<string> ExportSafeTensors(MblmModel model, string dir)
    {
        string json = ConfigWriter.ToJson(model.Config);
        return WriteAll(dir,
        [
            (SafeTensorsFile, path => ModelWeights.Save(model, path)),
            (ConfigJsonFile, path => File.WriteAllText(path, json)),
        ]);
    }

    // Writes every file under a temporary name, then moves them into place; a failure while moving puts back the files
    // already replaced (from backups made by File.Replace), so the folder ends as it was.
    private static List<string> WriteAll(string dir, (string Name, Action<string> Write)[] files)
    {
        string full = Path.GetFullPath(dir);
        if (File.Exists(full)) throw new IOException($"export folder '{dir}' is a file, not a folder");
        Directory.CreateDirectory(full);
        string id = Guid.NewGuid().ToString("N")[..8];
        var targets = files.Select(f => (Temp: Path.Combine(full, $".{f.Name}.tmp-{id}"), Final: Path.Combine(full, f.Name), f.Write)).ToList();
        foreach (var t in targets)
            if (Directory.Exists(t.Final)) throw new IOException($"cannot export to '{t.Final}': it is a folder");
        var placed = new List<(string Final, string? Backup)>();
        try
        {
            foreach (var t in targets) t.Write(t.Temp);
            foreach (var t in targets)
            {
                string? backup = File.Exists(t.Final) ? Path.Combine(full, $".{Path.GetFileName(t.Final)}.bak-{id}") : null;
                if (backup is null) File.Move(t.Temp, t.Final);
                else File.Replace(t.Temp, t.Final, backup);
                placed.Add((t.Final, backup));
            }
        }
        catch
        {
            for (int i = placed.Count - 1; i >= 0; i--)
            {
                var (final, backup) = placed[i];
                if (backup is null) File.Delete(final);
                else File.Move(backup, final, overwrite: true);
            }
            throw;
        }
        finally
        {
            foreach (var t in targets)
                if (File.Exists(t.Temp)) File.Delete(t.Temp);
        }
        foreach (var (_, backup) in placed)
            if (backup is not null) File.Delete(backup);
        return targets.Select(t => t.Final).ToList();
    }
}
