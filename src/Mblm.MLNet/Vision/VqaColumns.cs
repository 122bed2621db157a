using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.Vision;

/// <summary>Schema rules of the answer classifier.</summary>
internal static class VqaColumns
{
    public static (DataViewSchema.Column Image, DataViewSchema.Column Question, DataViewSchema.Column Label) Check(DataViewSchema schema, MblmAnswerClassifierTrainer.Options o)
    {
        var (image, question) = CheckInputs(schema, o);
        return (image, question, LabelColumn.Check(schema, o.LabelColumnName));
    }

    public static (DataViewSchema.Column Image, DataViewSchema.Column Question) CheckInputs(DataViewSchema schema, MblmAnswerClassifierTrainer.Options o)
    {
        var image = schema.GetColumnOrNull(o.ImageColumnName) ?? throw SchemaChecks.NotFound("image", o.ImageColumnName);
        if (image.Type is not Microsoft.ML.Transforms.Image.ImageDataViewType && !(image.Type is VectorDataViewType v && v.ItemType == NumberDataViewType.Byte))
            throw SchemaChecks.Mismatch("image", o.ImageColumnName, "Image (MLImage) or Vector<Byte> (image file bytes)", image.Type.ToString()!);
        var question = schema.GetColumnOrNull(o.QuestionColumnName) ?? throw SchemaChecks.NotFound("question", o.QuestionColumnName);
        if (question.Type is not TextDataViewType) throw SchemaChecks.Mismatch("question", o.QuestionColumnName, "Text", question.Type.ToString()!);
        return (image, question);
    }

    public static void Check(SchemaShape shape, MblmAnswerClassifierTrainer.Options o)
    {
        SchemaShape.Column Find(string role, string name) => SchemaChecks.Find(shape, role, name);
        var image = Find("image", o.ImageColumnName);
        bool imageOk = image.ItemType is Microsoft.ML.Transforms.Image.ImageDataViewType || image.Kind != SchemaShape.Column.VectorKind.Scalar && image.ItemType == NumberDataViewType.Byte;
        if (!imageOk) throw SchemaChecks.Mismatch("image", o.ImageColumnName, "Image (MLImage) or Vector<Byte> (image file bytes)", image.ItemType.ToString()!);
        var question = Find("question", o.QuestionColumnName);
        if (question.Kind != SchemaShape.Column.VectorKind.Scalar || question.ItemType is not TextDataViewType) throw SchemaChecks.Mismatch("question", o.QuestionColumnName, "Text",
            question.ItemType.ToString()!);
        LabelColumn.Check(shape, o.LabelColumnName);
    }
}

/// <summary>Reads a row's question bytes and model image bytes.</summary>
internal sealed class VqaRowReader(ImageByteOptions image)
{
    public Func<(byte[] Question, byte[] Image)> Reader(DataViewRow row, DataViewSchema.Column imageColumn, DataViewSchema.Column questionColumn)
    {
        var question = row.GetGetter<ReadOnlyMemory<char>>(questionColumn);
        ReadOnlyMemory<char> q = default;
        Func<RgbImage> readImage;
        if (imageColumn.Type is VectorDataViewType)
        {
            var bytes = row.GetGetter<VBuffer<byte>>(imageColumn);
            VBuffer<byte> buffer = default;
            readImage = () => { bytes(ref buffer); return RgbImage.Decode(buffer.DenseValues().ToArray()); };
        }
        else
        {
            var images = row.GetGetter<MLImage>(imageColumn);
            MLImage img = null!;
            readImage = () =>
            {
                images(ref img);
                if (img is null) throw new InvalidDataException($"image column '{imageColumn.Name}' has a missing image");
                return RgbImage.From(img); // copied now: ML.NET disposes the previous image on the next row
            };
        }
        return () =>
        {
            question(ref q);
            return (VqaLayout.Utf8(q.ToString()), ImageBytes.Encode(readImage(), image));
        };
    }
}
