// SPDX-License-Identifier: GPL-2.0
/*
 * QEMU's edu PCI device (1234:11e8, hw/misc/edu.c) as an importer that
 * really DMAs: PCI plumbing only (probe, BAR, DMA mask, one coherent page,
 * one engine transfer). What to transfer and what to check is in edu.rs.
 *
 * The engine copies up to 4 KiB between its internal buffer (device address
 * 0x40000) and a bus address, 100 ms of QEMU's virtual clock after the
 * command is written. Bus addresses go through the IOMMU when the machine
 * has one; QEMU ANDs them with the device's dma_mask property, which must
 * match the mask set here (module parameter edu_dma_bits).
 */
#include <linux/delay.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/module.h>
#include <linux/pci.h>

#define EDU_ID 0x00
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_CMD_RUN 0x1
#define EDU_CMD_TO_RAM 0x2
#define EDU_BUFFER 0x40000
#define EDU_TRANSFER_TIMEOUT_MS 5000

static unsigned int edu_dma_bits = 64;
module_param(edu_dma_bits, uint, 0444);
MODULE_PARM_DESC(edu_dma_bits, "DMA mask of the edu device in bits (QEMU: -device edu,dma_mask=...)");

struct rdi_edu {
	struct pci_dev *pdev;
	void __iomem *regs;
	void *page;
	dma_addr_t page_dma;
	struct mutex lock;	/* one transfer at a time */
};

static struct rdi_edu *rdi_edu;

struct device *rdi_edu_device(void);
void *rdi_edu_page(void);
int rdi_edu_copy(u64 ram, bool to_ram);
int rdi_edu_copy_page(bool to_page);
int rdi_edu_register(void);
void rdi_edu_unregister(void);
int rdi_sg_dma_segment(struct sg_table *sgt, unsigned int index, u64 *addr, u64 *len);
int rdi_edu_info(void);
void rdi_sg_segments(struct sg_table *sgt, u32 *cpu, u32 *dma, u64 *smallest_cpu);

/* What the DMA layer made of the device: bit 0 coherent, bit 1 behind an IOMMU. */
int rdi_edu_info(void)
{
	struct device *dev = rdi_edu_device();

	if (!dev)
		return -ENODEV;
	return (dev_is_dma_coherent(dev) ? 1 : 0) | (device_iommu_mapped(dev) ? 2 : 0);
}

/* DMA segment @index of a mapped table (sg_dma_address/len are macros). */
int rdi_sg_dma_segment(struct sg_table *sgt, unsigned int index, u64 *addr, u64 *len)
{
	struct scatterlist *sg;
	unsigned int i;

	for_each_sgtable_dma_sg(sgt, sg, i) {
		if (i == index) {
			*addr = sg_dma_address(sg);
			*len = sg_dma_len(sg);
			return 0;
		}
	}
	return -ENOENT;
}

/*
 * The segments of a mapped table: the CPU's (what an IOMMU maps one by one,
 * each with the biggest page-table blocks its alignment allows), the DMA
 * segments the device sees, and the smallest CPU segment in bytes.
 */
void rdi_sg_segments(struct sg_table *sgt, u32 *cpu, u32 *dma, u64 *smallest_cpu)
{
	struct scatterlist *sg;
	unsigned int i;

	*smallest_cpu = U64_MAX;
	for_each_sgtable_sg(sgt, sg, i)
		*smallest_cpu = min_t(u64, *smallest_cpu, sg->length);
	*cpu = sgt->orig_nents;
	*dma = sgt->nents;
}

/* The edu device, or NULL if the machine has none. */
struct device *rdi_edu_device(void)
{
	return rdi_edu ? &rdi_edu->pdev->dev : NULL;
}

/* The driver's coherent page (the other end of the engine's transfers). */
void *rdi_edu_page(void)
{
	return rdi_edu ? rdi_edu->page : NULL;
}

static int rdi_edu_run(u64 src, u64 dst, bool to_ram)
{
	unsigned int waited = 0;

	writeq(src, rdi_edu->regs + EDU_DMA_SRC);
	writeq(dst, rdi_edu->regs + EDU_DMA_DST);
	writeq(PAGE_SIZE, rdi_edu->regs + EDU_DMA_COUNT);
	writeq(EDU_CMD_RUN | (to_ram ? EDU_CMD_TO_RAM : 0), rdi_edu->regs + EDU_DMA_CMD);
	/* The transfer runs 100 ms (virtual) after the command. */
	msleep(100);
	while (readq(rdi_edu->regs + EDU_DMA_CMD) & EDU_CMD_RUN) {
		if (waited >= EDU_TRANSFER_TIMEOUT_MS)
			return -ETIMEDOUT;
		msleep(1);
		waited++;
	}
	return 0;
}

/*
 * One page between bus address @ram and the engine's buffer: @to_ram
 * writes the buffer to @ram, otherwise @ram is read into the buffer.
 */
int rdi_edu_copy(u64 ram, bool to_ram)
{
	int ret;

	if (!rdi_edu)
		return -ENODEV;
	mutex_lock(&rdi_edu->lock);
	ret = to_ram ? rdi_edu_run(EDU_BUFFER, ram, true) : rdi_edu_run(ram, EDU_BUFFER, false);
	mutex_unlock(&rdi_edu->lock);
	return ret;
}

/* Between the engine's buffer and the driver's coherent page. */
int rdi_edu_copy_page(bool to_page)
{
	return rdi_edu ? rdi_edu_copy(rdi_edu->page_dma, to_page) : -ENODEV;
}

static int rdi_edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct rdi_edu *edu;
	int ret;

	if (rdi_edu)
		return -EBUSY;
	edu = devm_kzalloc(&pdev->dev, sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	edu->regs = pcim_iomap_region(pdev, 0, "rdh_importer_edu");
	if (IS_ERR(edu->regs))
		return PTR_ERR(edu->regs);
	if ((readl(edu->regs + EDU_ID) & 0xff) != 0xed)
		return -ENODEV;
	pci_set_master(pdev);
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(edu_dma_bits));
	if (ret)
		return ret;
	/* The engine moves single pages: any segment length will do. */
	dma_set_max_seg_size(&pdev->dev, UINT_MAX);
	edu->page = dmam_alloc_coherent(&pdev->dev, PAGE_SIZE, &edu->page_dma, GFP_KERNEL);
	if (!edu->page)
		return -ENOMEM;
	mutex_init(&edu->lock);
	edu->pdev = pdev;
	rdi_edu = edu;
	dev_info(&pdev->dev, "edu DMA engine, %u-bit mask, %scoherent, %s\n", edu_dma_bits,
		 dev_is_dma_coherent(&pdev->dev) ? "" : "non-",
		 device_iommu_mapped(&pdev->dev) ? "behind an IOMMU" : "direct");
	return 0;
}

static void rdi_edu_remove(struct pci_dev *pdev)
{
	rdi_edu = NULL;
}

static const struct pci_device_id rdi_edu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};

static struct pci_driver rdi_edu_driver = {
	.name = "rdh_importer_edu",
	.id_table = rdi_edu_ids,
	.probe = rdi_edu_probe,
	.remove = rdi_edu_remove,
};

int rdi_edu_register(void)
{
	return pci_register_driver(&rdi_edu_driver);
}

void rdi_edu_unregister(void)
{
	pci_unregister_driver(&rdi_edu_driver);
}
