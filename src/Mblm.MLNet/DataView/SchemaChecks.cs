using Microsoft.ML;

namespace Mblm.MLNet.DataView;

/// <summary>Column lookups and schema errors worded as ML.NET's own components word them (Contracts.ExceptSchemaMismatch is internal to ML.NET).</summary>
internal static class SchemaChecks
{
    /// <summary>The column named <paramref name="name"/> of an estimator's schema shape (the last, if names repeat).</summary>
    public static SchemaShape.Column Find(SchemaShape shape, string role, string name) =>
        shape.Where(c => c.Name == name).Select(c => (SchemaShape.Column?)c).LastOrDefault() ?? throw NotFound(role, name);

    /// <summary><c>Could not find {role} column '{name}'</c>, with an optional hint after it.</summary>
    public static ArgumentOutOfRangeException NotFound(string role, string name, string parameter = "inputSchema", string? hint = null) =>
        new(parameter, $"Could not find {role} column '{name}'" + (hint is null ? "" : $" ({hint})"));

    /// <summary><c>Schema mismatch for {role} column '{name}': expected {expected}, got {actual}</c>.</summary>
    public static ArgumentOutOfRangeException Mismatch(string role, string name, string expected, string actual, string parameter = "inputSchema") =>
        new(parameter, $"Schema mismatch for {role} column '{name}': expected {expected}, got {actual}");
}
