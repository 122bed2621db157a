using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace Mblm.Config;

/// <summary>
/// The registry of stage block types: <c>block_type</c> name ↔ config record type. Built-in: <c>transformer</c>
/// (<see cref="TransformerBlockConfig"/>), <c>mamba2</c> (<see cref="Mamba2BlockConfig"/>) and the non-causal
/// <c>transformerEncoder</c> (<see cref="TransformerEncoderBlockConfig"/>, for <c>MblmEncoder</c>). Register your own block
/// once per process with <see cref="Register{TConfig}"/>; configs (JSON/YAML), the model, generation, the CLI and saved
/// ML.NET pipelines then accept <c>"block_type": "name"</c>.
/// </summary>
/// <remarks>
/// A block's config fields are its public settable (<c>init</c>) properties, read and written under their snake_case
/// names (<c>AttnHeadDims</c> ↔ <c>attn_head_dims</c>; override with <see cref="ConfigKeyAttribute"/>). C# <c>required</c>
/// properties are required keys; the others default to the record's initial values. Field types: int, long, double,
/// float, bool, string and their nullable forms. <c>pos_emb_type</c> is common to every block.
/// </remarks>
public static class StageBlocks
{
    private static readonly ConcurrentDictionary<string, Type> ByName = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<Type, string> ByType = new();
    private static readonly ConcurrentDictionary<Type, IReadOnlyList<BlockField>> FieldCache = new();
    private static readonly object Gate = new();

    static StageBlocks()
    {
        Register<TransformerBlockConfig>("transformer");
        Register<Mamba2BlockConfig>("mamba2");
        Register<TransformerEncoderBlockConfig>(TransformerEncoderBlockConfig.TypeName);
    }

    /// <summary>
    /// Registers block config type <typeparamref name="TConfig"/> under <paramref name="blockType"/>. Registering the same
    /// pair again is a no-op; another type under a taken name, or one type under two names, is an error.
    /// </summary>
    public static void Register<TConfig>(string blockType) where TConfig : StageBlockConfig => Register(typeof(TConfig), blockType);

    /// <summary>Non-generic form of <see cref="Register{TConfig}"/>.</summary>
    public static void Register(Type configType, string blockType)
    {
        ArgumentNullException.ThrowIfNull(configType);
        if (string.IsNullOrWhiteSpace(blockType)) throw new ArgumentException("a block type name must not be empty", nameof(blockType));
        if (!typeof(StageBlockConfig).IsAssignableFrom(configType) || configType.IsAbstract)
            throw new ArgumentException($"{configType} must be a concrete record deriving from {nameof(StageBlockConfig)}", nameof(configType));
        if (configType.GetConstructor(Type.EmptyTypes) is null)
            throw new ArgumentException($"{configType} needs a public parameterless constructor (a record with init properties)", nameof(configType));
        lock (Gate)
        {
            if (ByName.TryGetValue(blockType, out var existing))
            {
                if (existing == configType) return;
                throw new ArgumentException($"block_type '{blockType}' is already registered for {existing}", nameof(blockType));
            }
            if (ByType.TryGetValue(configType, out var name))
                throw new ArgumentException($"{configType} is already registered as block_type '{name}'", nameof(configType));
            _ = FieldsOf(configType); // reject unsupported field types now, not at the first config file
            ByName[blockType] = configType;
            ByType[configType] = blockType;
        }
    }

    /// <summary>The registered block type names.</summary>
    public static IReadOnlyCollection<string> Names => ByName.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>The config type registered under <paramref name="blockType"/>, or null.</summary>
    public static Type? Find(string blockType) => ByName.TryGetValue(blockType, out var t) ? t : null;

    /// <summary>The <c>block_type</c> name of a registered config type.</summary>
    public static string NameOf(Type configType) => ByType.TryGetValue(configType, out var n)
        ? n : throw new InvalidOperationException($"{configType} is not a registered stage block type; call StageBlocks.Register<{configType.Name}>(\"name\") once first");

    /// <summary>The config fields of a block type (without <c>block_type</c> and <c>pos_emb_type</c>), in declaration order.</summary>
    public static IReadOnlyList<BlockField> FieldsOf(Type configType) => FieldCache.GetOrAdd(configType, t =>
    {
        var props = new List<PropertyInfo>();
        // Base types first, then each derived type's own properties in declaration order.
        for (var type = t; type is not null && type != typeof(StageBlockConfig) && type != typeof(object); type = type.BaseType)
            props.InsertRange(0, type.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
                .Where(p => p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0).OrderBy(p => p.MetadataToken));
        return props.Select(p =>
        {
            var kind = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (kind != typeof(int) && kind != typeof(long) && kind != typeof(double) && kind != typeof(float) && kind != typeof(bool) && kind != typeof(string))
                throw new ArgumentException($"{t.Name}.{p.Name}: config fields must be int, long, double, float, bool or string, got {p.PropertyType}");
            string key = p.GetCustomAttribute<ConfigKeyAttribute>()?.Key ?? SnakeCase(p.Name);
            return new BlockField(key, p, p.IsDefined(typeof(RequiredMemberAttribute)));
        }).ToArray();
    });

    /// <summary>A new instance of a registered block type with the given field values (missing optional fields keep their defaults).</summary>
    internal static StageBlockConfig Create(Type configType, PosEmbType pos, IReadOnlyDictionary<string, object?> values)
    {
        var block = (StageBlockConfig)Activator.CreateInstance(configType)!;
        foreach (var f in FieldsOf(configType))
            if (values.TryGetValue(f.Key, out var v)) f.Property.SetValue(block, v);
        typeof(StageBlockConfig).GetProperty(nameof(StageBlockConfig.PosEmbType))!.SetValue(block, pos);
        return block;
    }

    /// <summary><c>AttnHeadDims</c> → <c>attn_head_dims</c>, <c>DState</c> → <c>d_state</c>.</summary>
    public static string SnakeCase(string name)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c) && i > 0 && (!char.IsUpper(name[i - 1]) || (i + 1 < name.Length && char.IsLower(name[i + 1])))) sb.Append('_');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }
}

/// <summary>One config field of a block type: its key in files, the property behind it, whether it is required.</summary>
/// <param name="Key">The key in JSON/YAML configs.</param>
/// <param name="Property">The record property.</param>
/// <param name="Required">Whether the key must be present (a C# <c>required</c> property).</param>
public sealed record BlockField(string Key, PropertyInfo Property, bool Required)
{
    /// <summary>The field's value type (nullable types unwrapped).</summary>
    public Type ValueType => Nullable.GetUnderlyingType(Property.PropertyType) ?? Property.PropertyType;

    /// <summary>Whether null is a valid value.</summary>
    public bool IsNullable => System.Nullable.GetUnderlyingType(Property.PropertyType) is not null || Property.PropertyType == typeof(string);
}

/// <summary>Sets the config-file key of a block field when it is not the property's snake_case name.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ConfigKeyAttribute(string key) : Attribute
{
    /// <summary>The key in JSON/YAML configs.</summary>
    public string Key { get; } = key;
}
