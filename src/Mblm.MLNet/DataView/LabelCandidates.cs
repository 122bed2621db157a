using Mblm.Inference;
using Mblm.Model;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.DataView;

/// <summary>
/// The classes of a classifier that predicts by label likelihood (the answer classifier, the text classifier): each class
/// is the label's key value, written as a text segment ([SOT] label [EOM], <see cref="TokenLayout.Answer"/>) after the row's
/// prompt; a row's scores are the softmax over the classes of the model's log-likelihood of each segment, its predicted
/// key the most likely class (1-based, as ML.NET's keys).
/// </summary>
internal sealed class LabelCandidates
{
    private readonly long[][] _segments;

    public LabelCandidates(IReadOnlyList<string> labels)
    {
        Labels = labels;
        _segments = labels.Select(l => TokenLayout.Answer(TokenLayout.Utf8(l))).ToArray();
    }

    /// <summary>The classes in key order (key k is Labels[k-1]).</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>The longest class segment (tokens).</summary>
    public int LongestSegment => _segments.Max(s => s.Length);

    /// <summary>
    /// Scores prompts one at a time: the prompt is decoded once and its cached state repeated per class
    /// (<see cref="ContinuationScorer"/>); best for long prompts.
    /// </summary>
    public (float[] Scores, uint Predicted)[] ScoreCached(MblmModel model, IReadOnlyList<long[]> prompts) =>
        prompts.Select(p => Normalise(ContinuationScorer.LogLikelihoods(model, p, _segments))).ToArray();

    /// <summary>
    /// Scores prompts together: every prompt followed by every class segment is one sample of one forward pass
    /// (<see cref="SequenceScorer"/>, at most <paramref name="samplesPerBatch"/> samples a pass); best for short prompts,
    /// where the per-token steps of the cached decoder cost more than re-reading the prompt.
    /// </summary>
    public (float[] Scores, uint Predicted)[] ScoreBatched(MblmModel model, IReadOnlyList<long[]> prompts, int samplesPerBatch)
    {
        int k = _segments.Length;
        var samples = prompts.SelectMany(p => _segments.Select(s =>
        {
            var mask = new float[p.Length + s.Length];
            Array.Fill(mask, 1f, p.Length, s.Length);
            return new ByteSample([.. p, .. s], mask);
        }));
        var nats = SequenceScorer.Score(model, samples, Math.Max(k, samplesPerBatch / k * k)).Select(s => -s.Nats).ToArray();
        return Enumerable.Range(0, prompts.Count).Select(r => Normalise(nats.AsSpan(r * k, k).ToArray())).ToArray();
    }

    private static (float[] Scores, uint Predicted) Normalise(double[] logp)
    {
        double max = logp.Max();
        var e = logp.Select(x => Math.Exp(x - max)).ToArray();
        double sum = e.Sum();
        uint best = 0;
        for (int c = 1; c < logp.Length; c++) if (logp[c] > logp[best]) best = (uint)c;
        return (e.Select(x => (float)(x / sum)).ToArray(), best + 1);
    }

    /// <summary>
    /// The added columns: <c>Score</c> (Vector&lt;Single, K&gt;, slot names = the classes, the annotations ML.NET's multiclass
    /// evaluator reads) and <c>PredictedLabel</c> (Key&lt;UInt32, K&gt; with the classes as key values).
    /// </summary>
    public IReadOnlyList<AddedColumnInfo> Columns(string scoreColumnName, string predictedLabelColumnName)
    {
        int k = Labels.Count;
        var names = new VBuffer<ReadOnlyMemory<char>>(k, Labels.Select(a => a.AsMemory()).ToArray());
        ValueGetter<VBuffer<ReadOnlyMemory<char>>> getNames = (ref VBuffer<ReadOnlyMemory<char>> v) => names.CopyTo(ref v);
        var score = new DataViewSchema.Annotations.Builder();
        score.Add("SlotNames", new VectorDataViewType(TextDataViewType.Instance, k), getNames);
        score.Add("ScoreColumnKind", TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = "MulticlassClassification".AsMemory());
        score.Add("ScoreValueKind", TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = "Score".AsMemory());
        var predicted = new DataViewSchema.Annotations.Builder();
        predicted.Add("KeyValues", new VectorDataViewType(TextDataViewType.Instance, k), getNames);
        return
        [
            new AddedColumnInfo(scoreColumnName, new VectorDataViewType(NumberDataViewType.Single, k), score.ToAnnotations()),
            new AddedColumnInfo(predictedLabelColumnName, new KeyDataViewType(typeof(uint), k), predicted.ToAnnotations()),
        ];
    }

    /// <summary>
    /// The classes read from a <c>stage.json</c> under <paramref name="key"/>: at least one, none null or repeated, and each
    /// segment at most <paramref name="room"/> tokens (what the model's context leaves after the shortest prompt).
    /// </summary>
    public static string[] Read(StageReader reader, System.Text.Json.Nodes.JsonObject stage, string key, long room, long context)
    {
        var labels = reader.Read<string[]>(stage[key], key);
        MblmFormatException Bad(string problem) => reader.Invalid(StageEntries.Stage, $"'{key}' {problem}");
        if (labels.Length == 0) throw Bad("is empty: a classifier needs at least one class");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < labels.Length; i++)
        {
            string? a = labels[i];
            if (a is null) throw Bad($"[{i}] is null");
            if (!seen.Add(a)) throw Bad($"lists '{(a.Length <= 40 ? a : a[..40] + "…")}' twice (at [{i}])");
            long tokens = TokenLayout.Answer(TokenLayout.Utf8(a)).Length;
            if (tokens > room) throw Bad($"[{i}] takes {tokens} tokens; after the shortest prompt the model's context of {context} leaves {room}");
        }
        return labels;
    }

    /// <summary>
    /// Where the saved input schema yields the label column, its key values must still be the classes (an edited
    /// <c>stage.json</c>, or a stage from another pipeline, would predict keys of other classes); null when they are.
    /// </summary>
    public (string Entry, string Problem)? ProblemAtLoad(DataViewSchema input, string labelColumnName, string key)
    {
        if (input.GetColumnOrNull(labelColumnName) is not { Type: KeyDataViewType } label
            || label.Annotations.Schema.GetColumnOrNull("KeyValues")?.Type is not VectorDataViewType { ItemType: TextDataViewType }) return null;
        var keys = LabelColumn.KeyValues(label);
        if (keys.SequenceEqual(Labels)) return null;
        int at = Enumerable.Range(0, Math.Min(keys.Length, Labels.Count)).FirstOrDefault(i => keys[i] != Labels[i], Math.Min(keys.Length, Labels.Count));
        return (StageEntries.Stage, $"'{key}' ({Labels.Count}) differ from the key values ({keys.Length}) of the label column '{labelColumnName}' " +
                                    $"the stages before produce, from position {at} on: the stage does not belong to this pipeline");
    }
}

/// <summary>Schema rules of a label-likelihood classifier's label and outputs.</summary>
internal static class LabelColumn
{
    private const string Expected = "Key<UInt32> with text key values (use MapValueToKey)";

    /// <summary>The label column of a data schema: a UInt32 key with text key values (the classes).</summary>
    public static DataViewSchema.Column Check(DataViewSchema schema, string name)
    {
        var label = schema.GetColumnOrNull(name) ?? throw SchemaChecks.NotFound("label", name);
        if (label.Type is not KeyDataViewType { RawType: var raw } || raw != typeof(uint))
            throw SchemaChecks.Mismatch("label", name, Expected, label.Type.ToString()!);
        if (label.Annotations.Schema.GetColumnOrNull("KeyValues")?.Type is not VectorDataViewType { ItemType: TextDataViewType })
            throw SchemaChecks.Mismatch("label", name, "key values of type Text (the classes)", "a key without text key values");
        return label;
    }

    /// <summary>The label column of an estimator's schema shape: a scalar key.</summary>
    public static void Check(SchemaShape shape, string name)
    {
        var label = SchemaChecks.Find(shape, "label", name);
        if (!label.IsKey || label.Kind != SchemaShape.Column.VectorKind.Scalar) throw SchemaChecks.Mismatch("label", name, Expected, label.ItemType.ToString()!);
    }

    /// <summary>A key column's key values as strings.</summary>
    public static string[] KeyValues(DataViewSchema.Column label)
    {
        VBuffer<ReadOnlyMemory<char>> values = default;
        label.GetKeyValues(ref values);
        return values.DenseValues().Select(v => v.ToString()).ToArray();
    }

    /// <summary>
    /// One training sample per row whose label is a known key (1..<paramref name="classCount"/>):
    /// <paramref name="open"/> makes, for the cursor over <paramref name="columns"/>, the function from a row's key to its
    /// sample. Rows without a label are skipped and counted in a warning (<paramref name="what"/> names the trainer); no
    /// labeled row at all is an error naming the label column. Also returns the longest sample and its row.
    /// </summary>
    public static (List<ByteSample> Samples, long Longest, long LongestRow) ReadSamples(IDataView input, DataViewSchema.Column[] columns,
        DataViewSchema.Column label, int classCount, Func<DataViewRowCursor, Func<uint, ByteSample>> open, IChannel ch, string what)
    {
        var samples = new List<ByteSample>();
        long unlabeled = 0, longest = 0, longestRow = 0, row = -1;
        using (var cursor = input.GetRowCursor(columns))
        {
            var sampleOf = open(cursor);
            var labelGetter = cursor.GetGetter<uint>(label);
            uint key = 0;
            while (cursor.MoveNext())
            {
                row++;
                labelGetter(ref key);
                if (key == 0 || key > classCount) { unlabeled++; continue; }
                var sample = sampleOf(key);
                if (sample.Ids.Length > longest) (longest, longestRow) = (sample.Ids.Length, row);
                samples.Add(sample);
            }
        }
        if (samples.Count == 0) throw new ArgumentException($"no training rows with a label in column '{label.Name}'", nameof(input));
        if (unlabeled > 0) ch.Warning(MessageSensitivity.None, $"{what}: {unlabeled} rows without a label were skipped");
        return (samples, longest, longestRow);
    }

    private sealed class Outputs
    {
        public float[] Score { get; set; } = [];
        public uint PredictedLabel { get; set; }
    }

    /// <summary>The estimator's output shape: Score (known-size vector) and PredictedLabel (key with key values), via a never-fitted CustomMapping.</summary>
    public static SchemaShape OutputShape(MLContext context, SchemaShape input, string scoreColumnName, string predictedLabelColumnName)
    {
        var definition = SchemaDefinition.Create(typeof(Outputs));
        var score = definition["Score"];   // looked up once: the indexer finds columns by their (renamed) column name
        score.ColumnName = scoreColumnName;
        score.ColumnType = new VectorDataViewType(NumberDataViewType.Single, 2);
        var predicted = definition["PredictedLabel"];
        predicted.ColumnName = predictedLabelColumnName;
        predicted.ColumnType = new KeyDataViewType(typeof(uint), 2);
        predicted.AddAnnotation("KeyValues", new VBuffer<ReadOnlyMemory<char>>(2, ["a".AsMemory(), "b".AsMemory()]),
            new VectorDataViewType(TextDataViewType.Instance, 2));
        return Mblm.MLNet.DataView.OutputShape.Add<Outputs>(context, input, definition);
    }
}
